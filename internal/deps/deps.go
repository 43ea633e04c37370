//go:build deps

// Package deps pins the project's dependencies while packages are being
// written in parallel. Removed before landing.
package deps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/alecthomas/kong"
	_ "github.com/centrifugal/centrifuge-go"
	_ "github.com/centrifugal/protocol"
	_ "github.com/coder/websocket"
	_ "github.com/decred/dcrd/dcrec/secp256k1/v4"
	_ "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/google/uuid"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/lxzan/gws"
	_ "github.com/pressly/goose/v3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/collectors"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "github.com/redis/rueidis"
	_ "github.com/stretchr/testify/require"
	_ "go.starlark.net/starlark"
	_ "go.starlark.net/starlarkstruct"
	_ "go.starlark.net/syntax"
	_ "go.uber.org/goleak"
	_ "golang.org/x/crypto/sha3"
	_ "gopkg.in/yaml.v3"
	_ "modernc.org/sqlite"
)
