package schedapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// Request bodies of the scheduler API. Decoding is strict: one JSON object,
// no unknown fields, values of the declared types; each problem is an
// Invalid error whose message names the field.

// registerRequest: omitted (or null) fields keep the node's stored values.
type registerRequest struct {
	Hostname     *string `json:"hostname"`
	TotalCores   *int    `json:"totalCores"`
	EnabledCores *int    `json:"enabledCores"`
	Platform     *string `json:"platform"`
	Version      *string `json:"version"`
	Instance     string  `json:"instance"`
}

type heartbeatRequest struct {
	Status   string `json:"status"`
	Draining bool   `json:"draining"`
	Instance string `json:"instance"`
}

type completeRequest struct {
	ChunkID string          `json:"chunkId"`
	LeaseID *string         `json:"leaseId"`
	Result  json.RawMessage `json:"result"`
}

type failRequest struct {
	ChunkID string  `json:"chunkId"`
	LeaseID *string `json:"leaseId"`
	Error   *struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"error"`
	Retryable bool `json:"retryable"`
}

type progressRequest struct {
	ChunkID string  `json:"chunkId"`
	LeaseID *string `json:"leaseId"`
	Done    int64   `json:"done"`
}

type createJobRequest struct {
	Config     json.RawMessage `json:"config"`
	Iterations int64           `json:"iterations"`
	AccessType string          `json:"accessType"`
	Priority   int             `json:"priority"`
	User       string          `json:"user"`
}

type claimRequest struct {
	Code        string `json:"code"`
	Name        string `json:"name"`
	MaxParallel int    `json:"maxParallel"`
	User        string `json:"user"`
}

type grantRequest struct {
	UserID string `json:"userId"`
	User   string `json:"user"`
}

// userOnly is the body of user API calls that take nothing but the
// backend's user field.
type userOnly struct {
	User string `json:"user"`
}

// decodeBody decodes body into dst (a pointer to one of the request
// structs). An empty body is the empty object.
func decodeBody(body []byte, dst any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	if body[0] != '{' {
		return invalid("body", "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("body", "unexpected data after the JSON object")
	}
	return nil
}

// decodeError turns an encoding/json error into a message naming the
// field.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return invalid(field, "must be "+jsonKind(te.Type.String())+", got "+te.Value)
	case errors.As(err, &se):
		return invalid("body", fmt.Sprintf("invalid JSON at byte %d", se.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("body", "truncated JSON")
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return errs.New(errs.Invalid, "unknown field "+name)
	}
	return invalid("body", strings.TrimPrefix(msg, "json: "))
}

// jsonKind names a Go type of the request structs the way a JSON client
// thinks of it.
func jsonKind(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "string":
		return "a string"
	case "int", "int64":
		return "an integer"
	case "bool":
		return "true or false"
	}
	return "an object"
}

func invalid(field, msg string) *errs.Error {
	return errs.New(errs.Invalid, field+": "+msg)
}
