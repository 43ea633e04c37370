package centrifugo

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

func TestEveryDomainCodeHasACode(t *testing.T) {
	for _, c := range errs.Codes {
		code, ok := domainCodes[c]
		require.True(t, ok, "domain code %s has no Centrifugo code", c)
		require.Equal(t, code, Code(errs.New(c, "x")), c.String())
	}
}

func TestSentinelsAndTemporary(t *testing.T) {
	for _, tc := range []struct {
		err  *errs.Error
		want uint32
	}{
		{hub.ErrUnknownChannel, CodeUnknownChannel},
		{hub.ErrMethodNotFound, CodeMethodNotFound},
		{hub.ErrAlreadySubscribed, CodeAlreadySubscribed},
		{hub.ErrTokenExpired, CodeTokenExpired},
		{hub.ErrTooManyRequests, CodeTooManyRequests},
		{hub.ErrUnrecoverablePosition, CodeUnrecoverablePosition},
		{hub.ErrNotAvailable, CodeNotAvailable},
		{hub.ErrRetryLater, CodeNotAvailable},
		{&errs.Error{Code: errs.Unavailable, Message: "worker unavailable", Temporary: true}, CodeInternal},
		{hub.ErrBadRequest.With("bad request: data required"), CodeBadRequest},
	} {
		require.Equal(t, tc.want, Code(tc.err), tc.err.Error())
	}
	for _, s := range hub.Sentinels {
		require.NotZero(t, Code(s), s.Error())
	}
}
