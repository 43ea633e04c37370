// Package schedsql implements scheduler.Tx over database/sql for the SQL
// stores (internal/store/sqlite and internal/store/postgres): one set of
// queries, written with '?' placeholders, and a Dialect for what differs
// (placeholders, row locks, duplicate-key errors). Times are stored as
// unix microseconds (0 = unset), JSON documents as bytes.
package schedsql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/internal/scheduler"
)

// Dialect is what differs between the SQL stores.
type Dialect struct {
	// Numbered placeholders ($1, $2, …) instead of '?'.
	Numbered bool
	// ForUpdate is appended to reads that lock a row ("" when the database
	// serialises writers, as SQLite does).
	ForUpdate string
	// SkipLocked, when set, makes LeaseChunk skip chunk rows another
	// transaction holds instead of waiting for them (PostgreSQL).
	SkipLocked bool
	// IsDuplicate reports a unique-key violation.
	IsDuplicate func(error) bool
}

// maxPrepared bounds the statements Prepare keeps (queries with IN lists
// or multi-row VALUES vary in length; past the bound they run unprepared).
const maxPrepared = 256

// Queries caches the rebound query texts of one Dialect and, with
// Prepare, prepared statements.
type Queries struct {
	d       Dialect
	mu      sync.Mutex
	cache   map[string]string
	db      *sql.DB
	stmts   map[string]*sql.Stmt
	wanted  map[string]bool
	nwanted atomic.Int32
}

// New returns the queries of d.
func New(d Dialect) *Queries { return &Queries{d: d, cache: map[string]string{}} }

// Prepare makes q keep prepared statements of db (for drivers that do not
// cache them themselves, like SQLite's). A query first runs unprepared and
// is prepared by the next PrepareWanted, which the store calls outside of
// any transaction (preparing on db inside one would wait for a connection
// the transaction holds). Call Prepare before any transaction.
func (q *Queries) Prepare(db *sql.DB) {
	q.db, q.stmts, q.wanted = db, map[string]*sql.Stmt{}, map[string]bool{}
}

// PrepareWanted prepares the queries run unprepared so far. Errors leave
// them unprepared (they still run).
func (q *Queries) PrepareWanted(ctx context.Context) {
	if q.db == nil || q.nwanted.Load() == 0 {
		return
	}
	q.mu.Lock()
	var todo []string
	for k := range q.wanted {
		todo = append(todo, k)
	}
	clear(q.wanted)
	q.nwanted.Store(0)
	q.mu.Unlock()
	for _, k := range todo {
		st, err := q.db.PrepareContext(ctx, k)
		if err != nil {
			continue
		}
		q.mu.Lock()
		if old := q.stmts[k]; old != nil {
			_ = old.Close()
		}
		q.stmts[k] = st
		q.mu.Unlock()
	}
}

// stmt returns the transaction's form of the prepared statement of
// query, or nil when it is not (yet) prepared.
func (q *Queries) stmt(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	if q.db == nil {
		return nil
	}
	q.mu.Lock()
	st := q.stmts[query]
	if st == nil && len(q.stmts)+len(q.wanted) < maxPrepared && !q.wanted[query] {
		q.wanted[query] = true
		q.nwanted.Add(1)
	}
	q.mu.Unlock()
	if st == nil {
		return nil
	}
	return tx.StmtContext(ctx, st)
}

// q rebinds s's '?' placeholders for the dialect (cached).
func (q *Queries) q(s string) string {
	if !q.d.Numbered {
		return s
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if r, ok := q.cache[s]; ok {
		return r
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		} else {
			b.WriteByte(s[i])
		}
	}
	r := b.String()
	if len(q.cache) < 4*maxPrepared {
		q.cache[s] = r
	}
	return r
}

// Tx returns the scheduler.Tx of an open transaction.
func (q *Queries) Tx(tx *sql.Tx) scheduler.Tx { return &txn{q: q, tx: tx} }

type txn struct {
	q  *Queries
	tx *sql.Tx
}

var _ scheduler.Tx = (*txn)(nil)

func us(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromUS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (t *txn) exec(ctx context.Context, query string, args ...any) (int64, error) {
	query = t.q.q(query)
	st := t.q.stmt(ctx, t.tx, query)
	var res sql.Result
	var err error
	if st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = t.tx.ExecContext(ctx, query, args...)
	}
	if err != nil {
		if t.q.d.IsDuplicate != nil && t.q.d.IsDuplicate(err) {
			return 0, scheduler.ErrDuplicate
		}
		return 0, err
	}
	return res.RowsAffected()
}

// query runs a rebound, possibly prepared, query.
func (t *txn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	query = t.q.q(query)
	if st := t.q.stmt(ctx, t.tx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

// row is query for one row; errors surface in Scan.
func (t *txn) row(ctx context.Context, query string, args ...any) *sql.Row {
	query = t.q.q(query)
	if st := t.q.stmt(ctx, t.tx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

func noRows(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return scheduler.ErrNoRows
	}
	return err
}

// Nodes.

const nodeCols = `id, public_key, claim_code, name, hostname, platform, version, total_cores, enabled_cores, max_parallel, owner_id, status, draining, instance, registered_at, running, last_seen_at, created_at, updated_at, row_version`

type scanner interface{ Scan(...any) error }

// queryAll runs q and scans every row with scan.
func queryAll[T any](ctx context.Context, t *txn, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func scanNode(r scanner) (scheduler.Node, error) {
	var n scheduler.Node
	var owner sql.NullString
	var registered, seen, created, updated int64
	err := r.Scan(&n.ID, &n.PublicKey, &n.ClaimCode, &n.Name, &n.Hostname, &n.Platform, &n.Version,
		&n.TotalCores, &n.EnabledCores, &n.MaxParallel, &owner, &n.Status, &n.Draining, &n.Instance, &registered, &n.Running, &seen, &created, &updated, &n.RowVersion)
	n.OwnerID, n.RegisteredAt = owner.String, fromUS(registered)
	n.LastSeenAt, n.CreatedAt, n.UpdatedAt = fromUS(seen), fromUS(created), fromUS(updated)
	return n, noRows(err)
}

func (t *txn) InsertNode(ctx context.Context, n scheduler.Node) error {
	_, err := t.exec(ctx, `INSERT INTO sched_nodes (`+nodeCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		n.ID, n.PublicKey, n.ClaimCode, n.Name, n.Hostname, n.Platform, n.Version, n.TotalCores, n.EnabledCores,
		n.MaxParallel, nullStr(n.OwnerID), n.Status, n.Draining, n.Instance, us(n.RegisteredAt), n.Running, us(n.LastSeenAt), us(n.CreatedAt), us(n.UpdatedAt), n.RowVersion)
	return err
}

func (t *txn) node(ctx context.Context, where string, lock bool, arg any) (scheduler.Node, error) {
	q := `SELECT ` + nodeCols + ` FROM sched_nodes WHERE ` + where
	if lock {
		q += t.q.d.ForUpdate
	}
	return scanNode(t.row(ctx, q, arg))
}

func (t *txn) NodeByKey(ctx context.Context, key []byte) (scheduler.Node, error) {
	return t.node(ctx, `public_key = ?`, false, key)
}

func (t *txn) NodeForUpdate(ctx context.Context, id string) (scheduler.Node, error) {
	return t.node(ctx, `id = ?`, true, id)
}

func (t *txn) NodeByClaimCodeForUpdate(ctx context.Context, code string) (scheduler.Node, error) {
	// Codes are 30 bits of the key hash: prefer an unclaimed node on a
	// collision.
	return t.node(ctx, `claim_code = ? ORDER BY (owner_id IS NOT NULL), created_at, id LIMIT 1`, true, code)
}

func (t *txn) UpdateNode(ctx context.Context, n *scheduler.Node) error {
	return noRows(t.row(ctx, `UPDATE sched_nodes SET claim_code=?, name=?, hostname=?, platform=?, version=?, total_cores=?, enabled_cores=?, max_parallel=?, owner_id=?, status=?, draining=?, instance=?, registered_at=?, last_seen_at=?, updated_at=?, row_version=row_version+1 WHERE id=? RETURNING row_version`,
		n.ClaimCode, n.Name, n.Hostname, n.Platform, n.Version, n.TotalCores, n.EnabledCores, n.MaxParallel, nullStr(n.OwnerID), n.Status, n.Draining,
		n.Instance, us(n.RegisteredAt), us(n.LastSeenAt), us(n.UpdatedAt), n.ID).Scan(&n.RowVersion))
}

func (t *txn) AddRunning(ctx context.Context, nodeID string, delta, limit int) (bool, error) {
	var n int64
	var err error
	if limit > 0 {
		n, err = t.exec(ctx, `UPDATE sched_nodes SET running = running + ?, row_version = row_version + 1 WHERE id = ? AND running + ? <= ? AND NOT draining`, delta, nodeID, delta, limit)
	} else {
		n, err = t.exec(ctx, `UPDATE sched_nodes SET running = CASE WHEN running + ? < 0 THEN 0 ELSE running + ? END, row_version = row_version + 1 WHERE id = ?`, delta, delta, nodeID)
	}
	return n > 0, err
}

// inList returns "?,?,…" for n values.
func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func (t *txn) Nodes(ctx context.Context, ownerID string, ids []string) ([]scheduler.Node, error) {
	q := `SELECT ` + nodeCols + ` FROM sched_nodes WHERE 1=1`
	var args []any
	if ownerID != "" {
		q += ` AND owner_id = ?`
		args = append(args, ownerID)
	}
	if ids != nil {
		if len(ids) == 0 {
			return nil, nil
		}
		q += ` AND id IN (` + inList(len(ids)) + `)`
		for _, id := range ids {
			args = append(args, id)
		}
	}
	return queryAll(ctx, t, scanNode, q+` ORDER BY created_at, id`, args...)
}

// capacitySQL is Node.Capacity in SQL.
const capacitySQL = `CASE WHEN max_parallel <= 0 AND total_cores <= 0 THEN 1 WHEN max_parallel <= 0 THEN total_cores WHEN total_cores <= 0 THEN max_parallel WHEN max_parallel < total_cores THEN max_parallel ELSE total_cores END`

func (t *txn) FreeNodes(ctx context.Context, ids []string) ([]scheduler.Node, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return queryAll(ctx, t, scanNode, `SELECT `+nodeCols+` FROM sched_nodes WHERE id IN (`+inList(len(ids))+`) AND owner_id IS NOT NULL AND NOT draining AND running < `+capacitySQL+` ORDER BY created_at, id`, args...)
}

func (t *txn) CountDraining(ctx context.Context, ids []string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	var n int
	err := t.row(ctx, `SELECT COUNT(*) FROM sched_nodes WHERE id IN (`+inList(len(ids))+`) AND draining`, args...).Scan(&n)
	return n, err
}

func (t *txn) Grant(ctx context.Context, nodeID, userID string, at time.Time) error {
	_, err := t.exec(ctx, `INSERT INTO sched_grants (node_id, user_id, created_at) VALUES (?,?,?) ON CONFLICT (node_id, user_id) DO NOTHING`, nodeID, userID, us(at))
	return err
}

func (t *txn) Grants(ctx context.Context, nodeIDs []string) (map[string][]string, error) {
	out := map[string][]string{}
	if len(nodeIDs) == 0 {
		return out, nil
	}
	args := make([]any, len(nodeIDs))
	for i, id := range nodeIDs {
		args[i] = id
	}
	rows, err := t.query(ctx, (`SELECT node_id, user_id FROM sched_grants WHERE node_id IN (` + inList(len(nodeIDs)) + `) ORDER BY node_id, user_id`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var n, u string
		if err := rows.Scan(&n, &u); err != nil {
			return nil, err
		}
		out[n] = append(out[n], u)
	}
	return out, rows.Err()
}

// Jobs.

const jobCols = `id, owner_id, status, access_type, priority, iterations, config_hash, config, n_total, n_pending, n_running, n_completed, n_failed, n_cancelled, iterations_done, result, error, created_at, updated_at, finished_at, row_version`

func scanJob(r scanner) (scheduler.Job, error) {
	var j scheduler.Job
	var result []byte
	var created, updated, finished int64
	var config []byte
	err := r.Scan(&j.ID, &j.OwnerID, &j.Status, &j.AccessType, &j.Priority, &j.Iterations, &j.ConfigHash, &config,
		&j.Chunks.Total, &j.Chunks.Pending, &j.Chunks.Running, &j.Chunks.Completed, &j.Chunks.Failed, &j.Chunks.Cancelled,
		&j.IterationsDone, &result, &j.Error, &created, &updated, &finished, &j.RowVersion)
	if err != nil {
		return scheduler.Job{}, noRows(err)
	}
	j.Config = json.RawMessage(config)
	j.CreatedAt, j.UpdatedAt, j.FinishedAt = fromUS(created), fromUS(updated), fromUS(finished)
	if len(result) > 0 {
		var a scheduler.Aggregate
		if err := json.Unmarshal(result, &a); err != nil {
			return scheduler.Job{}, fmt.Errorf("job %s: stored result: %w", j.ID, err)
		}
		j.Result = &a
	}
	return j, nil
}

func resultBytes(a *scheduler.Aggregate) ([]byte, error) {
	if a == nil {
		return nil, nil
	}
	return json.Marshal(a)
}

func (t *txn) InsertJob(ctx context.Context, j scheduler.Job) error {
	res, err := resultBytes(j.Result)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO sched_jobs (`+jobCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		j.ID, j.OwnerID, string(j.Status), string(j.AccessType), j.Priority, j.Iterations, j.ConfigHash, []byte(j.Config),
		j.Chunks.Total, j.Chunks.Pending, j.Chunks.Running, j.Chunks.Completed, j.Chunks.Failed, j.Chunks.Cancelled,
		j.IterationsDone, res, j.Error, us(j.CreatedAt), us(j.UpdatedAt), us(j.FinishedAt), j.RowVersion)
	return err
}

const chunkCols = `id, job_id, idx, iterations, seed_offset, status, node_id, lease_id, deadline, attempts, available_at, done, result, error, created_at, updated_at`

// chunkBatch bounds the rows of one multi-row insert.
const chunkBatch = 500

func (t *txn) InsertChunks(ctx context.Context, cs []scheduler.Chunk) error {
	row := `(` + inList(16) + `)`
	for len(cs) > 0 {
		n := min(len(cs), chunkBatch)
		args := make([]any, 0, n*16)
		for _, c := range cs[:n] {
			args = append(args, c.ID, c.JobID, c.Index, c.Iterations, c.SeedOffset, string(c.Status), nullStr(c.NodeID), nullStr(c.LeaseID),
				us(c.Deadline), c.Attempts, us(c.AvailableAt), c.Done, []byte(c.Result), c.Error, us(c.CreatedAt), us(c.UpdatedAt))
		}
		q := `INSERT INTO sched_chunks (` + chunkCols + `) VALUES ` + strings.TrimSuffix(strings.Repeat(row+",", n), ",")
		if _, err := t.exec(ctx, q, args...); err != nil {
			return err
		}
		cs = cs[n:]
	}
	return nil
}

func (t *txn) job(ctx context.Context, id string, lock bool) (scheduler.Job, error) {
	q := `SELECT ` + jobCols + ` FROM sched_jobs WHERE id = ?`
	if lock {
		q += t.q.d.ForUpdate
	}
	return scanJob(t.row(ctx, q, id))
}

func (t *txn) Job(ctx context.Context, id string) (scheduler.Job, error) {
	return t.job(ctx, id, false)
}

func (t *txn) JobForUpdate(ctx context.Context, id string) (scheduler.Job, error) {
	return t.job(ctx, id, true)
}

func (t *txn) UpdateJob(ctx context.Context, j *scheduler.Job) error {
	res, err := resultBytes(j.Result)
	if err != nil {
		return err
	}
	return noRows(t.row(ctx, `UPDATE sched_jobs SET status=?, n_total=?, n_pending=?, n_running=?, n_completed=?, n_failed=?, n_cancelled=?, iterations_done=?, result=?, error=?, updated_at=?, finished_at=?, row_version=row_version+1 WHERE id=? RETURNING row_version`,
		string(j.Status), j.Chunks.Total, j.Chunks.Pending, j.Chunks.Running, j.Chunks.Completed, j.Chunks.Failed, j.Chunks.Cancelled,
		j.IterationsDone, res, j.Error, us(j.UpdatedAt), us(j.FinishedAt), j.ID).Scan(&j.RowVersion))
}

func (t *txn) jobs(ctx context.Context, q string, args ...any) ([]scheduler.Job, error) {
	return queryAll(ctx, t, scanJob, q, args...)
}

func (t *txn) Jobs(ctx context.Context, ownerID string, status scheduler.JobStatus, limit int) ([]scheduler.Job, error) {
	q := `SELECT ` + jobCols + ` FROM sched_jobs WHERE 1=1`
	var args []any
	if ownerID != "" {
		q += ` AND owner_id = ?`
		args = append(args, ownerID)
	}
	if status != "" {
		q += ` AND status = ?`
		args = append(args, string(status))
	}
	return t.jobs(ctx, q+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, limit)...)
}

func (t *txn) CountJobs(ctx context.Context) (map[scheduler.JobStatus]int, error) {
	rows, err := t.query(ctx, `SELECT status, COUNT(*) FROM sched_jobs GROUP BY status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[scheduler.JobStatus]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[scheduler.JobStatus(s)] = n
	}
	return out, rows.Err()
}

func (t *txn) RunnableJobs(ctx context.Context, limit int) ([]scheduler.Job, error) {
	return t.jobs(ctx, `SELECT `+jobCols+` FROM sched_jobs WHERE status IN ('pending','running') AND n_pending > 0 ORDER BY priority DESC, created_at, id LIMIT ?`, limit)
}

// Chunks.

func scanChunk(r scanner) (scheduler.Chunk, error) {
	var c scheduler.Chunk
	var node, lease sql.NullString
	var deadline, avail, created, updated int64
	var result []byte
	err := r.Scan(&c.ID, &c.JobID, &c.Index, &c.Iterations, &c.SeedOffset, &c.Status, &node, &lease, &deadline,
		&c.Attempts, &avail, &c.Done, &result, &c.Error, &created, &updated)
	if err != nil {
		return scheduler.Chunk{}, noRows(err)
	}
	c.NodeID, c.LeaseID = node.String, lease.String
	if len(result) > 0 {
		c.Result = json.RawMessage(result)
	}
	c.Deadline, c.AvailableAt, c.CreatedAt, c.UpdatedAt = fromUS(deadline), fromUS(avail), fromUS(created), fromUS(updated)
	return c, nil
}

func (t *txn) chunk(ctx context.Context, id string, lock bool) (scheduler.Chunk, error) {
	q := `SELECT ` + chunkCols + ` FROM sched_chunks WHERE id = ?`
	if lock {
		q += t.q.d.ForUpdate
	}
	return scanChunk(t.row(ctx, q, id))
}

func (t *txn) Chunk(ctx context.Context, id string) (scheduler.Chunk, error) {
	return t.chunk(ctx, id, false)
}

func (t *txn) ChunkForUpdate(ctx context.Context, id string) (scheduler.Chunk, error) {
	return t.chunk(ctx, id, true)
}

func (t *txn) UpdateChunk(ctx context.Context, c scheduler.Chunk) error {
	_, err := t.exec(ctx, `UPDATE sched_chunks SET status=?, node_id=?, lease_id=?, deadline=?, attempts=?, available_at=?, done=?, result=?, error=?, updated_at=? WHERE id=?`,
		string(c.Status), nullStr(c.NodeID), nullStr(c.LeaseID), us(c.Deadline), c.Attempts, us(c.AvailableAt), c.Done, []byte(c.Result), c.Error, us(c.UpdatedAt), c.ID)
	return err
}

func (t *txn) LeaseChunk(ctx context.Context, chunkID, nodeID, leaseID string, deadline, now time.Time) (bool, error) {
	q := `UPDATE sched_chunks SET status='running', node_id=?, lease_id=?, deadline=?, attempts=attempts+1, done=0, updated_at=? WHERE id=? AND status='pending' AND available_at<=?`
	args := []any{nodeID, leaseID, us(deadline), us(now), chunkID, us(now)}
	if t.q.d.SkipLocked {
		q += ` AND id IN (SELECT id FROM sched_chunks WHERE id=? FOR UPDATE SKIP LOCKED)`
		args = append(args, chunkID)
	}
	n, err := t.exec(ctx, q, args...)
	return n == 1, err
}

func (t *txn) chunks(ctx context.Context, q string, args ...any) ([]scheduler.Chunk, error) {
	return queryAll(ctx, t, scanChunk, q, args...)
}

func (t *txn) PendingChunks(ctx context.Context, jobID string, now time.Time, limit int) ([]scheduler.Chunk, error) {
	return t.chunks(ctx, `SELECT `+chunkCols+` FROM sched_chunks WHERE job_id=? AND status='pending' AND available_at<=? ORDER BY idx LIMIT ?`, jobID, us(now), limit)
}

func (t *txn) ChunksOfJob(ctx context.Context, jobID string, status scheduler.ChunkStatus) ([]scheduler.Chunk, error) {
	if status == "" {
		return t.chunks(ctx, `SELECT `+chunkCols+` FROM sched_chunks WHERE job_id=? ORDER BY idx`, jobID)
	}
	return t.chunks(ctx, `SELECT `+chunkCols+` FROM sched_chunks WHERE job_id=? AND status=? ORDER BY idx`, jobID, string(status))
}

func (t *txn) CancelChunks(ctx context.Context, jobID string, status scheduler.ChunkStatus, now time.Time) (int, error) {
	n, err := t.exec(ctx, `UPDATE sched_chunks SET status='cancelled', deadline=0, updated_at=? WHERE job_id=? AND status=?`, us(now), jobID, string(status))
	return int(n), err
}

func (t *txn) RunningChunks(ctx context.Context, nodeID string) ([]scheduler.Chunk, error) {
	return t.chunks(ctx, `SELECT `+chunkCols+` FROM sched_chunks WHERE node_id=? AND status='running' ORDER BY updated_at, id`, nodeID)
}

func (t *txn) ExtendLeases(ctx context.Context, nodeID string, deadline time.Time) (int, error) {
	n, err := t.exec(ctx, `UPDATE sched_chunks SET deadline=? WHERE node_id=? AND status='running' AND deadline<?`, us(deadline), nodeID, us(deadline))
	return int(n), err
}

func (t *txn) ExpiredChunks(ctx context.Context, now time.Time, limit int) ([]scheduler.Chunk, error) {
	return t.chunks(ctx, `SELECT `+chunkCols+` FROM sched_chunks WHERE status='running' AND deadline<=? ORDER BY deadline LIMIT ?`, us(now), limit)
}

func (t *txn) NextDeadline(ctx context.Context, now time.Time) (time.Time, time.Time, error) {
	var lease, avail sql.NullInt64
	if err := t.row(ctx, `SELECT MIN(deadline) FROM sched_chunks WHERE status='running'`).Scan(&lease); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if err := t.row(ctx, (`SELECT MIN(available_at) FROM sched_chunks WHERE status='pending' AND available_at>?`), us(now)).Scan(&avail); err != nil {
		return time.Time{}, time.Time{}, err
	}
	return fromUS(lease.Int64), fromUS(avail.Int64), nil
}

// Leases.

func (t *txn) InsertLease(ctx context.Context, leaseID, chunkID, nodeID string, at time.Time) error {
	_, err := t.exec(ctx, `INSERT INTO sched_leases (lease_id, chunk_id, node_id, created_at) VALUES (?,?,?,?)`, leaseID, chunkID, nodeID, us(at))
	return err
}

func (t *txn) LeaseHolder(ctx context.Context, leaseID string) (string, string, error) {
	var node, chunk string
	err := t.row(ctx, (`SELECT node_id, chunk_id FROM sched_leases WHERE lease_id=?`), leaseID).Scan(&node, &chunk)
	return node, chunk, noRows(err)
}

func (t *txn) LeasedAt(ctx context.Context, leaseID string) (time.Time, error) {
	var at int64
	err := t.row(ctx, `SELECT created_at FROM sched_leases WHERE lease_id=?`, leaseID).Scan(&at)
	return fromUS(at), noRows(err)
}

func (t *txn) HeldBefore(ctx context.Context, chunkID, nodeID string) (bool, error) {
	var n int
	err := t.row(ctx, (`SELECT COUNT(*) FROM sched_leases WHERE chunk_id=? AND node_id=?`), chunkID, nodeID).Scan(&n)
	return n > 0, err
}
