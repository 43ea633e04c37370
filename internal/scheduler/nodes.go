package scheduler

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// MaxCores bounds reported cores and maxParallel.
const MaxCores = 4096

func checkKey(key ed25519.PublicKey) error {
	if len(key) != ed25519.PublicKeySize {
		return errs.New(errs.Unauthorized, "Invalid key length")
	}
	return nil
}

func checkText(field, v string) error {
	if len(v) > MaxNameLength {
		return invalid(field, fmt.Sprintf("longer than %d bytes", MaxNameLength))
	}
	return nil
}

func (i NodeInfo) validate() error {
	if err := checkText("instance", i.Instance); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"hostname", i.Hostname}, {"platform", i.Platform}, {"version", i.Version}} {
		if f.v == nil {
			continue
		}
		if err := checkText(f.name, *f.v); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"totalCores", i.TotalCores}, {"enabledCores", i.EnabledCores}} {
		if f.v != nil && (*f.v < 0 || *f.v > MaxCores) {
			return invalid(f.name, fmt.Sprintf("must be between 0 and %d", MaxCores))
		}
	}
	return nil
}

// RegisterNode records a node by key, or returns the known node of key,
// updating the fields info carries (omitted ones keep their stored
// values). Registering is a new node process starting: it records
// info.Instance and the time (so a late drain from the previous process
// is ignored, see Heartbeat and FailChunk) and ends a draining state (the
// node is offered chunks again). The known row is read locked, so a
// register is ordered with a concurrent claim or drain. Claimed nodes
// answer ClaimCode nil.
func (s *Service) RegisterNode(ctx context.Context, key ed25519.PublicKey, info NodeInfo) (Registration, error) {
	if err := s.running(); err != nil {
		return Registration{}, err
	}
	if err := checkKey(key); err != nil {
		return Registration{}, err
	}
	if err := info.validate(); err != nil {
		return Registration{}, err
	}
	now := s.now()
	var n Node
	var created, undrained bool
	err := s.store.InTx(ctx, func(tx Tx) error {
		created, undrained = false, false
		var err error
		n, err = tx.NodeByKey(ctx, key)
		if err == nil {
			n, err = tx.NodeForUpdate(ctx, n.ID)
		}
		switch {
		case err == nil:
			info.apply(&n)
			if n.Draining || n.Status == StatusDraining {
				undrained = true
				n.Draining, n.Status = false, StatusIdle
			}
			n.Instance, n.RegisteredAt = info.Instance, now
			n.LastSeenAt, n.UpdatedAt = now, now
			return tx.UpdateNode(ctx, &n)
		case errors.Is(err, ErrNoRows):
			n = Node{
				ID: uuid.NewString(), PublicKey: append([]byte(nil), key...), ClaimCode: ClaimCode(key),
				Status: StatusIdle, Instance: info.Instance, RegisteredAt: now,
				LastSeenAt: now, CreatedAt: now, UpdatedAt: now, RowVersion: 1,
			}
			info.apply(&n)
			created = true
			return tx.InsertNode(ctx, n)
		default:
			return err
		}
	})
	if errors.Is(err, ErrDuplicate) {
		// Registered concurrently by another request: answer its row.
		err = s.store.InTx(ctx, func(tx Tx) (err error) {
			n, err = tx.NodeByKey(ctx, key)
			return err
		})
	}
	if err != nil {
		return Registration{}, storeErr(err, ErrNodeNotFound)
	}
	if created || undrained {
		s.nodeFeed(n)
	}
	if undrained && n.Claimed() && s.isOnline(n.ID) {
		s.kickAssign()
	}
	r := Registration{ID: n.ID, Claimed: n.Claimed()}
	if !n.Claimed() {
		code := n.ClaimCode
		r.ClaimCode = &code
	}
	return r, nil
}

// Heartbeat records that the node is alive (hb.Status, if not empty, is
// what it reports), and extends the leases of the chunks it holds.
// hb.Draining marks the node draining: no chunk is assigned to it from
// the commit on, until it registers again; unless hb.Instance is set and
// is not the registered instance (a late heartbeat of a process that a
// new one of the same key replaced). While draining, reported statuses
// are ignored. Unclaimed or unknown nodes get ErrNodeNotClaimed.
func (s *Service) Heartbeat(ctx context.Context, key ed25519.PublicKey, hb HeartbeatInfo) (NodeStatus, error) {
	if err := s.running(); err != nil {
		return NodeStatus{}, err
	}
	if err := checkKey(key); err != nil {
		return NodeStatus{}, err
	}
	if err := checkText("status", hb.Status); err != nil {
		return NodeStatus{}, err
	}
	if err := checkText("instance", hb.Instance); err != nil {
		return NodeStatus{}, err
	}
	now := s.now()
	var n Node
	changed := false
	err := s.store.InTx(ctx, func(tx Tx) error {
		changed = false
		var err error
		n, err = tx.NodeByKey(ctx, key)
		if err != nil {
			return err
		}
		if !n.Claimed() {
			return ErrNodeNotClaimed
		}
		// Chunks before the node row (lock order).
		if _, err := tx.ExtendLeases(ctx, n.ID, now.Add(s.cfg.Lease)); err != nil {
			return err
		}
		// Read the row again, locked: a drain or registration committed
		// since the first read must not be lost, and the instance check
		// needs the current registration.
		if n, err = tx.NodeForUpdate(ctx, n.ID); err != nil {
			return err
		}
		switch {
		case n.Draining:
		case hb.Draining && (hb.Instance == "" || hb.Instance == n.Instance):
			n.Draining, n.Status, changed = true, StatusDraining, true
		case hb.Status != "":
			changed = hb.Status != n.Status
			n.Status = hb.Status
		}
		n.LastSeenAt, n.UpdatedAt = now, now
		return tx.UpdateNode(ctx, &n)
	})
	if err != nil {
		return NodeStatus{}, storeErr(err, ErrNodeNotClaimed)
	}
	if changed {
		s.nodeFeed(n)
	}
	return NodeStatus{ID: n.ID, Name: n.Name, MaxParallel: n.MaxParallel, Status: n.Status}, nil
}

// Verify is Heartbeat without a status (the origin's node calls
// POST /nodes/verify).
func (s *Service) Verify(ctx context.Context, key ed25519.PublicKey) (NodeStatus, error) {
	return s.Heartbeat(ctx, key, HeartbeatInfo{})
}

// NodeForToken returns the claimed node of key, for issuing its hub
// token; ErrNodeNotClaimed otherwise.
func (s *Service) NodeForToken(ctx context.Context, key ed25519.PublicKey) (Node, error) {
	if err := s.running(); err != nil {
		return Node{}, err
	}
	if err := checkKey(key); err != nil {
		return Node{}, err
	}
	var n Node
	err := s.store.InTx(ctx, func(tx Tx) (err error) {
		n, err = tx.NodeByKey(ctx, key)
		return err
	})
	if err != nil {
		return Node{}, storeErr(err, ErrNodeNotClaimed)
	}
	if !n.Claimed() {
		return Node{}, ErrNodeNotClaimed
	}
	n.Online = s.isOnline(n.ID)
	return n, nil
}

// ClaimNode gives the unclaimed node with claim code (case-insensitive,
// '-' ignored) to user, with a name and maxParallel (0 = its enabled or
// total cores), and publishes its config on nodes:{id}.
// ErrUnknownClaimCode, ErrAlreadyClaimed, or Invalid naming "code",
// "name" or "maxParallel".
func (s *Service) ClaimNode(ctx context.Context, user, code, name string, maxParallel int) (Node, error) {
	if err := s.running(); err != nil {
		return Node{}, err
	}
	if user == "" {
		return Node{}, errs.New(errs.Unauthorized, "no user")
	}
	code = NormalizeClaimCode(code)
	if len(code) != ClaimCodeLength || strings.Trim(code, claimAlphabet) != "" {
		return Node{}, invalid("code", fmt.Sprintf("must be %d characters of A-Z and 2-7", ClaimCodeLength))
	}
	name = strings.TrimSpace(name)
	if err := checkText("name", name); err != nil {
		return Node{}, err
	}
	if maxParallel < 0 || maxParallel > MaxCores {
		return Node{}, invalid("maxParallel", fmt.Sprintf("must be between 0 and %d", MaxCores))
	}
	var n Node
	err := s.store.InTx(ctx, func(tx Tx) error {
		var err error
		n, err = tx.NodeByClaimCodeForUpdate(ctx, code)
		if err != nil {
			return err
		}
		if n.Claimed() {
			return ErrAlreadyClaimed
		}
		n.OwnerID = user
		n.Name = name
		if n.Name == "" {
			n.Name = n.Hostname
		}
		n.MaxParallel = maxParallel
		if n.MaxParallel == 0 {
			n.MaxParallel = n.EnabledCores
		}
		if n.MaxParallel == 0 {
			n.MaxParallel = n.TotalCores
		}
		n.UpdatedAt = s.now()
		return tx.UpdateNode(ctx, &n)
	})
	if err != nil {
		return Node{}, storeErr(err, ErrUnknownClaimCode)
	}
	n.Online = s.isOnline(n.ID)
	s.publishBestEffort(NodeChannel(n.ID), NodeConfig{Type: EventConfig, UserID: n.OwnerID, Name: n.Name, TotalCores: n.TotalCores, MaxParallel: n.MaxParallel})
	s.nodeFeed(n)
	if n.Online {
		s.kickAssign()
	}
	return n, nil
}

// Nodes lists the viewer's nodes (every node for admins) with their online
// state.
func (s *Service) Nodes(ctx context.Context, v Viewer) ([]Node, error) {
	if err := s.running(); err != nil {
		return nil, err
	}
	if !v.Admin && v.UserID == "" {
		return nil, errs.New(errs.Unauthorized, "no user")
	}
	owner := v.UserID
	if v.Admin {
		owner = ""
	}
	var nodes []Node
	err := s.store.InTx(ctx, func(tx Tx) (err error) {
		nodes, err = tx.Nodes(ctx, owner, nil)
		return err
	})
	if err != nil {
		return nil, storeErr(err, nil)
	}
	for i := range nodes {
		nodes[i].Online = s.isOnline(nodes[i].ID)
	}
	if nodes == nil {
		nodes = []Node{}
	}
	return nodes, nil
}

// GrantNode lets userID's "user" jobs run on nodeID, which the viewer must
// own (or be admin). ErrNodeNotFound, ErrNotYours, Invalid "userId".
func (s *Service) GrantNode(ctx context.Context, v Viewer, nodeID, userID string) error {
	if err := s.running(); err != nil {
		return err
	}
	userID = strings.TrimSpace(userID)
	if userID == "" {
		return invalid("userId", "required")
	}
	if err := checkText("userId", userID); err != nil {
		return err
	}
	now := s.now()
	err := s.store.InTx(ctx, func(tx Tx) error {
		n, err := tx.NodeForUpdate(ctx, nodeID)
		if err != nil {
			return err
		}
		if !v.may(n.OwnerID) {
			if !n.Claimed() {
				return ErrNodeNotFound
			}
			return ErrNotYours
		}
		return tx.Grant(ctx, nodeID, userID, now)
	})
	if err != nil {
		return storeErr(err, ErrNodeNotFound)
	}
	s.kickAssign()
	return nil
}

// AssignedChunks returns the chunks leased to the node now, as the
// messages of chunks:{nodeId}, so a node that (re)connects resumes them.
func (s *Service) AssignedChunks(ctx context.Context, key ed25519.PublicKey) ([]Assignment, error) {
	if err := s.running(); err != nil {
		return nil, err
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	out := []Assignment{}
	err := s.store.InTx(ctx, func(tx Tx) error {
		out = out[:0]
		n, err := tx.NodeByKey(ctx, key)
		if err != nil {
			return err
		}
		cs, err := tx.RunningChunks(ctx, n.ID)
		if err != nil {
			return err
		}
		jobs := map[string]Job{}
		for _, c := range cs {
			j, ok := jobs[c.JobID]
			if !ok {
				if j, err = tx.Job(ctx, c.JobID); err != nil {
					return err
				}
				jobs[c.JobID] = j
			}
			out = append(out, assignmentOf(j, c))
		}
		return nil
	})
	if err != nil {
		return nil, storeErr(err, ErrNodeNotFound)
	}
	return out, nil
}

func assignmentOf(j Job, c Chunk) Assignment {
	return Assignment{ID: c.ID, JobID: j.ID, LeaseID: c.LeaseID, Iterations: c.Iterations, ConfigHash: j.ConfigHash, Config: j.Config, SeedOffset: c.SeedOffset, Deadline: c.Deadline}
}
