package circle

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/dispatch"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/script"
	"github.com/switchboard-rt/switchboard/protocol/circles"
)

func TestRPCErrorTable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		data string
	}{
		{errs.New(errs.Invalid, "script is required"), circles.CodeInvalidParams, `"script is required"`},
		{errs.New(errs.Unauthorized, "signature does not verify"), circles.CodeInvalidCredentials, `"signature does not verify"`},
		{errAuthRequired, circles.CodeAuthRequired, ""},
		{&errs.Error{Code: errs.NotFound}, circles.CodeMethodNotFound, ""},
		{errs.New(errs.LimitExceeded, "too many outstanding nonces"), circles.CodeTooManyRequests, `"too many outstanding nonces"`},
		{errs.New(errs.Unavailable, "server shutting down"), circles.CodeExecution, `"server shutting down"`},
		{errors.New("secret"), circles.CodeInternalError, ""},
		{errs.New(errs.Internal, "secret"), circles.CodeInternalError, ""},
	} {
		got := rpcError(tc.err)
		require.Equal(t, tc.code, got.Code, tc.err.Error())
		require.Equal(t, tc.data, string(got.Data), tc.err.Error())
	}
	for _, c := range errs.Codes {
		code, ok := rpcCodes[c]
		require.True(t, ok, "domain code %s has no JSON-RPC code", c)
		require.Equal(t, code, rpcError(errs.New(c, "x")).Code, c.String())
	}
}

// A play's failures are execution errors with their client message,
// whatever their domain code.
func TestPlayErrorTable(t *testing.T) {
	timeout := 2 * time.Second
	for _, tc := range []struct {
		err  error
		code int
		data string
		ok   bool
	}{
		{&script.Error{Kind: script.KindQuota, Msg: "over"}, circles.CodeExecution, `"quota: over"`, true},
		{dispatch.ErrQueueFull, circles.CodeExecution, `"circle queue full, try again later"`, true},
		{&dispatch.WorkerError{Msg: "boom"}, circles.CodeExecution, `"boom"`, true},
		{fmt.Errorf("play: %w", context.DeadlineExceeded), circles.CodeExecution, `"timeout: play exceeded 2s"`, true},
		{context.Canceled, circles.CodeExecution, `"cancelled"`, true},
		{auth.ErrTokenInvalid, circles.CodeInternalError, "", false},
		{errors.New("secret"), circles.CodeInternalError, "", false},
	} {
		got, ok := playError(tc.err, timeout)
		require.Equal(t, tc.ok, ok, tc.err.Error())
		require.Equal(t, tc.code, got.Code, tc.err.Error())
		require.Equal(t, tc.data, string(got.Data), tc.err.Error())
	}
}
