package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Chunk is one assignment as published on chunks:{nodeId} and listed by
// GET /chunks/assigned: {"id","jobId","leaseId","iterations","configHash",
// "config","seedOffset","deadline"}. Raw is the message as received; it is
// the worker's task input.
type Chunk struct {
	ID         ID              `json:"id"`
	JobID      ID              `json:"jobId"`
	LeaseID    ID              `json:"leaseId"`
	Iterations int64           `json:"iterations"`
	ConfigHash string          `json:"configHash"`
	Config     json.RawMessage `json:"config"`
	SeedOffset int64           `json:"seedOffset"`
	// Deadline is the lease expiry (zero when the message has none).
	Deadline time.Time `json:"deadline"`

	Raw json.RawMessage `json:"-"`
}

// maxChunkMessage bounds one chunk message.
const maxChunkMessage = 4 << 20

// DecodeChunk parses and checks a chunk message: id and leaseId are
// required, iterations must be positive, seedOffset not negative.
func DecodeChunk(data []byte) (Chunk, error) {
	var c Chunk
	if len(data) > maxChunkMessage {
		return c, fmt.Errorf("chunk message of %d bytes over the limit of %d", len(data), maxChunkMessage)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("chunk message: %w", err)
	}
	switch {
	case c.ID.IsZero():
		return c, errors.New("chunk message: id is missing")
	case c.LeaseID.IsZero():
		return c, errors.New("chunk message: leaseId is missing")
	case c.Iterations <= 0:
		return c, fmt.Errorf("chunk message: iterations %d must be positive", c.Iterations)
	case c.SeedOffset < 0:
		return c, fmt.Errorf("chunk message: seedOffset %d must not be negative", c.SeedOffset)
	}
	c.Raw = append(json.RawMessage(nil), bytes.TrimSpace(data)...)
	return c, nil
}

// decodeAssigned parses GET /chunks/assigned: a JSON array of chunk
// messages or an object {"chunks": [...]}. Invalid entries are returned as
// errors next to the valid ones.
func decodeAssigned(data []byte) ([]Chunk, []error, error) {
	var list []json.RawMessage
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '{' {
		var wrap struct {
			Chunks []json.RawMessage `json:"chunks"`
		}
		if err := json.Unmarshal(data, &wrap); err != nil {
			return nil, nil, fmt.Errorf("assigned chunks: %w", err)
		}
		list = wrap.Chunks
	} else if err := json.Unmarshal(data, &list); err != nil {
		return nil, nil, fmt.Errorf("assigned chunks: %w", err)
	}
	var out []Chunk
	var bad []error
	for _, raw := range list {
		c, err := DecodeChunk(raw)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, c)
	}
	return out, bad, nil
}

// control is a message on nodes:{nodeId}: {"type":"config","userId",
// "name","totalCores","maxParallel"} or {"type":"cancel","jobId",
// "chunkIds":[…]}.
type control struct {
	Type        string `json:"type"`
	UserID      ID     `json:"userId"`
	Name        string `json:"name"`
	TotalCores  int    `json:"totalCores"`
	MaxParallel int    `json:"maxParallel"`
	JobID       ID     `json:"jobId"`
	ChunkIDs    []ID   `json:"chunkIds"`
}

func decodeControl(data []byte) (control, error) {
	var c control
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("node control message: %w", err)
	}
	if c.Type != "config" && c.Type != "cancel" {
		return c, fmt.Errorf("node control message: unknown type %q", c.Type)
	}
	if c.MaxParallel < 0 {
		return c, fmt.Errorf("node control message: maxParallel %d must not be negative", c.MaxParallel)
	}
	return c, nil
}

// workerProgress is the params of a worker's "progress" call.
type workerProgress struct {
	Done int64 `json:"done"`
}
