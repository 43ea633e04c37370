package api

import (
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// The server API codes and transport-mode statuses are Centrifugo's; this
// table is the wire contract.
func TestAPIErrorTable(t *testing.T) {
	for _, tc := range []struct {
		err    error
		want   *Error
		status int
	}{
		{hub.ErrInternal, &Error{Code: 100, Message: "internal server error"}, 500},
		{hub.ErrUnauthorized, &Error{Code: 101, Message: "unauthorized"}, 500},
		{hub.ErrUnknownChannel, &Error{Code: 102, Message: "unknown channel"}, 404},
		{hub.ErrPermissionDenied, &Error{Code: 103, Message: "permission denied"}, 500},
		{hub.ErrMethodNotFound, &Error{Code: 104, Message: "not found"}, 404},
		{hub.ErrAlreadySubscribed, &Error{Code: 105, Message: "already subscribed"}, 500},
		{hub.ErrLimitExceeded, &Error{Code: 106, Message: "limit exceeded"}, 500},
		{hub.ErrBadRequest, &Error{Code: 107, Message: "bad request"}, 400},
		{hub.ErrNotAvailable, &Error{Code: 108, Message: "not available"}, 400},
		{hub.ErrTokenExpired, &Error{Code: 109, Message: "token expired"}, 500},
		{hub.ErrTooManyRequests, &Error{Code: 111, Message: "too many requests"}, 500},
		{hub.ErrUnrecoverablePosition, &Error{Code: 112, Message: "unrecoverable position"}, 416},
		{hub.ErrNoClient, &Error{Code: 104, Message: "not found"}, 404},
		{errs.New(errs.Conflict, "conflict"), &Error{Code: 113, Message: "conflict"}, 409},
		{&badBody{msg: "malformed request"}, &Error{Code: 107, Message: "malformed request"}, 400},
		{&hub.AppError{Code: 4003, Message: "denied"}, &Error{Code: 4003, Message: "denied"}, 500},
		{errors.New("redis: secret"), &Error{Code: 100, Message: "internal server error"}, 500},
		{&errs.Error{Code: errs.Unavailable, Message: "worker unavailable", Temporary: true}, &Error{Code: 100, Message: "worker unavailable"}, 500},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			got := toAPIError(tc.err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.status, transportStatus(got.Code))
		})
	}
	for _, s := range hub.Sentinels {
		require.NotZero(t, toAPIError(s).Code, s.Error())
	}
}

func TestAPIErrorEveryDomainCode(t *testing.T) {
	for _, c := range errs.Codes {
		code := toAPIError(errs.New(c, "x")).Code
		require.True(t, code >= 100 && code <= 113, "domain code %s → %d", c, code)
	}
}

func TestRequestErrors(t *testing.T) {
	for _, tc := range []struct {
		re     *requestError
		status int
		code   uint32
	}{
		{errMethodNotAllowed, http.StatusMethodNotAllowed, 107},
		{errUnauthorized, http.StatusUnauthorized, 101},
		{errUnknownMethod("m"), http.StatusNotFound, 104},
		{errBodyTooLarge("m"), http.StatusRequestEntityTooLarge, 107},
		{errBodyUnreadable, http.StatusBadRequest, 107},
		{errBodyNotObject, http.StatusBadRequest, 107},
		{errBadBody("m"), http.StatusBadRequest, 107},
	} {
		require.Equal(t, tc.status, tc.re.status, tc.re.err.Message)
		require.Equal(t, tc.code, apiCode(tc.re.err), tc.re.err.Message)
	}
}
