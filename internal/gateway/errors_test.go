package gateway

import (
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

// errorFor returns an error the gateway answers with wire code code.
func errorFor(code string) error {
	switch code {
	case CodeUnauthorized:
		return errUnauthorized
	case CodeMethodNotAllowed:
		return errMethodNotAllowed("use POST")
	case CodePayloadTooLarge:
		return errPayloadTooLarge("body exceeds 1 bytes")
	case worker.CodeExecution:
		return &worker.Error{Code: code, Message: "m", Remote: true}
	}
	return &worker.Error{Code: code, Message: "m"}
}

// Every row of the error table in docs/worker-gateway.md is what the
// gateway answers.
func TestWireErrorsMatchDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/worker-gateway.md")
	require.NoError(t, err)
	rows := regexp.MustCompile("(?m)^\\| (\\d{3}) \\| [^|]*?`([A-Z_]+)`[^|]*\\|").FindAllSubmatch(doc, -1)
	require.GreaterOrEqual(t, len(rows), 10)
	h := &Handler{log: slog.New(slog.DiscardHandler)}
	r := httptest.NewRequest("GET", "/__runner/x", nil)
	check := func(code string, status int) {
		got, _, st := h.wireError(r, errorFor(code))
		require.Equal(t, code, got)
		require.Equal(t, status, st, code)
	}
	for _, row := range rows {
		status, _ := strconv.Atoi(string(row[1]))
		check(string(row[2]), status)
	}
	check(worker.CodeShuttingDown, 503) // documented in the OVERLOADED row
}

func TestWireErrorEveryDomainCode(t *testing.T) {
	h := &Handler{log: slog.New(slog.DiscardHandler)}
	r := httptest.NewRequest("GET", "/__runner/x", nil)
	for _, c := range errs.Codes {
		status, ok := domainStatus[c]
		require.True(t, ok, "domain code %s has no HTTP status", c)
		if c == errs.Internal {
			continue
		}
		code, _, st := h.wireError(r, &errs.Error{Code: c, Reason: "SOME_CODE", Message: "m"})
		require.Equal(t, "SOME_CODE", code)
		require.Equal(t, status, st)
	}
	for _, err := range []error{errors.New("secret"), errs.New(errs.Invalid, "no wire code"), errs.New(errs.Internal, "secret")} {
		code, msg, st := h.wireError(r, err)
		require.Equal(t, []any{CodeInternal, "internal error", 500}, []any{code, msg, st}, err.Error())
	}
	code, msg, st := h.wireError(r, &worker.Error{Code: worker.CodeCanceled, Message: "request canceled", Err: errors.New("ctx")})
	require.Equal(t, []any{CodeInternal, "request canceled", 500}, []any{code, msg, st})
	code, _, st = h.wireError(r, &worker.Error{Code: worker.CodeNotFound, Message: "no handler", Remote: true})
	require.Equal(t, []any{worker.CodeNotFound, 404}, []any{code, st})
	code, _, st = h.wireError(r, &worker.Error{Message: "boom", Remote: true})
	require.Equal(t, []any{worker.CodeExecution, 500}, []any{code, st})
}
