package delivery

import (
	"errors"
	"sync"
)

// Errors of Enqueue.
var (
	// ErrOverflow: the frame would take the queue past its limit; the
	// queue is now closed.
	ErrOverflow = errors.New("delivery: queue limit exceeded")
	// ErrClosed: the queue was closed before.
	ErrClosed = errors.New("delivery: queue closed")
)

// Sink is the connection end of a Queue, implemented by the adapter.
type Sink interface {
	// WriteBatch writes frames, in order, as the adapter frames them (one
	// WebSocket message of newline-joined JSON, one QUIC stream write, …).
	// The pool calls it from one goroutine at a time per queue. The frames
	// are shared: it must not modify them or keep them after returning.
	WriteBatch(frames [][]byte) error
	// Overflow is called once when the queue overflows: synchronously, in
	// the goroutine of the Enqueue (or Queue.Overflow) call that overflowed,
	// after the queue is closed and its lock released. It must not block.
	Overflow()
	// WriteFailed is called once, in a writer goroutine, with the error of
	// a failed WriteBatch; the queue is closed. It must not block.
	WriteFailed(err error)
}

// Queue is one connection's bounded outgoing queue. It is safe for
// concurrent use; frames are written in Enqueue order.
type Queue struct {
	pool  *Pool
	sink  Sink
	limit int

	mu     sync.Mutex
	frames [][]byte
	// spare is the last written batch's slice, emptied, for the next
	// frames: a connection that gets one frame at a time reuses it
	// instead of allocating one per frame.
	spare   [][]byte
	bytes   int // bytes in frames, counted against limit
	writing bool
	closed  bool
}

// NewQueue returns an empty queue writing to sink, holding at most limit
// bytes not yet taken by a writer (limit <= 0: DefaultQueueLimit).
func (p *Pool) NewQueue(sink Sink, limit int) *Queue {
	if limit <= 0 {
		limit = DefaultQueueLimit
	}
	return &Queue{pool: p, sink: sink, limit: limit}
}

// maxSpare is the largest batch slice a queue keeps for reuse; a
// bigger one (a burst) goes to the collector.
const maxSpare = 64

// DefaultQueueLimit is the byte limit of a queue made with limit 0.
const DefaultQueueLimit = 1 << 20

// Enqueue queues frame and makes sure a writer will take it. It never
// blocks. A frame beyond the limit closes the queue, drops what it held,
// calls the sink's Overflow and returns ErrOverflow; a closed queue
// returns ErrClosed. frame must stay unmodified.
func (q *Queue) Enqueue(frame []byte) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	if q.bytes+len(frame) > q.limit {
		q.overflowLocked()
		return ErrOverflow
	}
	if q.frames == nil && q.spare != nil {
		q.frames, q.spare = q.spare, nil
	}
	q.frames = append(q.frames, frame)
	q.bytes += len(frame)
	submit := !q.writing
	q.writing = true
	q.mu.Unlock()
	if submit {
		q.pool.submit(q)
	}
	return nil
}

// Room returns how many more bytes the queue accepts now (0 when closed).
// Adapters that hold frames outside the queue for a while (a subscription
// being set up) count them against it and call Overflow when they exceed it.
func (q *Queue) Room() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0
	}
	return q.limit - q.bytes
}

// Overflow closes the queue as if an Enqueue had overflowed it (the sink's
// Overflow is called unless the queue was already closed).
func (q *Queue) Overflow() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.overflowLocked()
}

// overflowLocked closes the queue, unlocks it and tells the sink.
func (q *Queue) overflowLocked() {
	q.closed = true
	q.frames, q.bytes, q.spare = nil, 0, nil
	q.mu.Unlock()
	q.pool.metrics.overflows.Inc()
	q.sink.Overflow()
}

// Close drops queued frames; later Enqueues return ErrClosed. A write in
// progress finishes. It is idempotent.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.frames, q.bytes, q.spare = nil, 0, nil
	q.mu.Unlock()
}

// flush writes everything queued as one batch. It reports whether more
// was queued meanwhile: the queue stays marked as writing and goes back to
// the pool.
func (q *Queue) flush(w *worker) bool {
	q.mu.Lock()
	if len(q.frames) == 0 || q.closed {
		q.writing = false
		q.frames, q.bytes = nil, 0
		q.mu.Unlock()
		return false
	}
	frames, n := q.frames, q.bytes
	q.frames, q.bytes = nil, 0
	q.mu.Unlock()

	m := q.pool.metrics
	m.frames.Add(float64(len(frames)))
	m.batches.Inc()
	m.bytes.Add(float64(n))
	w.writeStart.Store(max(q.pool.clock.Now().UnixNano(), 1)) // 0 means not writing
	err := q.sink.WriteBatch(frames)
	w.writeStart.Store(0)

	if cap(frames) <= maxSpare {
		clear(frames) // the sink keeps none of them
	}
	q.mu.Lock()
	if cap(frames) <= maxSpare && !q.closed {
		q.spare = frames[:0]
	}
	if err != nil {
		q.writing, q.closed = false, true
		q.frames, q.bytes, q.spare = nil, 0, nil
		q.mu.Unlock()
		m.writeErrors.Inc()
		q.sink.WriteFailed(err)
		return false
	}
	if len(q.frames) > 0 && !q.closed {
		q.mu.Unlock()
		return true
	}
	q.writing = false
	q.mu.Unlock()
	return false
}
