package clientproto

import (
	"errors"
	"fmt"
	"testing"

	"github.com/centrifugal/protocol"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/centrifugo"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// The client-protocol codes of the hub's sentinels are Centrifugo's; this
// table is the wire contract.
func TestProtoErrorSentinels(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want *protocol.Error
	}{
		{hub.ErrInternal, &protocol.Error{Code: 100, Message: "internal server error", Temporary: true}},
		{hub.ErrUnauthorized, &protocol.Error{Code: 101, Message: "unauthorized"}},
		{hub.ErrUnknownChannel, &protocol.Error{Code: 102, Message: "unknown channel"}},
		{hub.ErrPermissionDenied, &protocol.Error{Code: 103, Message: "permission denied"}},
		{hub.ErrMethodNotFound, &protocol.Error{Code: 104, Message: "method not found"}},
		{hub.ErrAlreadySubscribed, &protocol.Error{Code: 105, Message: "already subscribed"}},
		{hub.ErrLimitExceeded, &protocol.Error{Code: 106, Message: "limit exceeded"}},
		{hub.ErrBadRequest, &protocol.Error{Code: 107, Message: "bad request"}},
		{hub.ErrNotAvailable, &protocol.Error{Code: 108, Message: "not available"}},
		{hub.ErrRetryLater, &protocol.Error{Code: 108, Message: "not available", Temporary: true}},
		{hub.ErrTokenExpired, &protocol.Error{Code: 109, Message: "token expired"}},
		{hub.ErrTooManyRequests, &protocol.Error{Code: 111, Message: "too many requests", Temporary: true}},
		{hub.ErrUnrecoverablePosition, &protocol.Error{Code: 112, Message: "unrecoverable position"}},
		{hub.ErrNoClient, &protocol.Error{Code: 104, Message: "no such client"}},
		{fmt.Errorf("%w: user connection limit", hub.ErrLimitExceeded), &protocol.Error{Code: 106, Message: "limit exceeded"}},
		{hub.ErrBadRequest.With("bad request: data required"), &protocol.Error{Code: 107, Message: "bad request: data required"}},
		{errors.New("dial tcp: secret"), &protocol.Error{Code: 100, Message: "internal server error", Temporary: true}},
		{errs.New(errs.Internal, "secret"), &protocol.Error{Code: 100, Message: "internal server error", Temporary: true}},
		{&errs.Error{Code: errs.Timeout, Message: "worker did not answer in time", Temporary: true}, &protocol.Error{Code: 100, Message: "worker did not answer in time", Temporary: true}},
		{&errs.Error{Code: errs.Unavailable, Message: "worker unavailable", Temporary: true}, &protocol.Error{Code: 100, Message: "worker unavailable", Temporary: true}},
		{&hub.AppError{Code: 4003, Message: "denied"}, &protocol.Error{Code: 4003, Message: "denied"}},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			require.Equal(t, tc.want, protoError(tc.err))
		})
	}
	for _, s := range hub.Sentinels {
		require.NotZero(t, protoError(s).Code, s.Error())
	}
}

func TestProtoErrorEveryDomainCode(t *testing.T) {
	for _, c := range errs.Codes {
		code := protoError(errs.New(c, "x")).Code
		require.True(t, code >= centrifugo.CodeInternal && code <= centrifugo.CodeUnrecoverablePosition, "%s → %d", c, code)
	}
}

func TestKnownCodeCoversDisconnectTable(t *testing.T) {
	for _, d := range hub.Disconnects {
		require.True(t, knownCode(d.Code), d.Reason)
	}
	require.True(t, knownCode(centrifugo.CodeTooManyRequests))
	require.False(t, knownCode(4003))
}
