package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Connection settings (Centrifugo's choices for its rueidis clients).
const (
	DefaultDialTimeout   = time.Second
	DefaultKeepAlive     = 400 * time.Millisecond
	DefaultMaxFlushDelay = 100 * time.Microsecond
)

// ClientOption turns an address into rueidis options: redis://, rediss://,
// unix:// (as rueidis.ParseURL) and Sentinel
// redis+sentinel://[user:pass@]host1:port[,host2:port…][/db]?sentinel_master_name=NAME
// with optional sentinel_user, sentinel_password (credentials in the URL
// are the master's) and extra addr=host:port parameters. Client-side
// caching and retries are off, pipelining always on.
func ClientOption(address string) (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	address, hosts := splitSentinelHosts(address)
	u, err := url.Parse(address)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the address, which may hold a password
		}
		return opt, fmt.Errorf("redis address: %w", err)
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		opt, err = rueidis.ParseURL(address)
		if err != nil {
			return opt, fmt.Errorf("redis address: %w", err)
		}
		opt.ForceSingleClient = true
	case "redis+sentinel", "rediss+sentinel":
		opt, err = sentinelOption(u, hosts)
		if err != nil {
			return opt, err
		}
	default:
		return opt, fmt.Errorf("redis address: scheme %q is not one of redis, rediss, unix, redis+sentinel", u.Scheme)
	}
	opt.DisableCache = true
	opt.DisableRetry = true
	opt.AlwaysPipelining = true
	opt.MaxFlushDelay = DefaultMaxFlushDelay
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = DefaultDialTimeout
	}
	opt.Dialer.KeepAlive = DefaultKeepAlive
	return opt, nil
}

// NewClient creates a client for address (see ClientOption). An unreachable
// Redis is not an error: it is logged, and commands fail until Redis answers.
func NewClient(address string, log *slog.Logger) (rueidis.Client, error) {
	opt, err := ClientOption(address)
	if err != nil {
		return nil, err
	}
	c, err := rueidis.NewClient(opt)
	if c == nil {
		return nil, err
	}
	if err != nil {
		log.Warn("redis is not reachable yet", "error", err)
	}
	return c, nil
}

// splitSentinelHosts takes the comma-separated host list out of a Sentinel
// address (net/url rejects it) and puts a placeholder host in its place.
func splitSentinelHosts(address string) (string, []string) {
	scheme, rest, ok := strings.Cut(address, "://")
	if !ok || !strings.HasSuffix(scheme, "+sentinel") {
		return address, nil
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	user := ""
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		user, authority = authority[:at+1], authority[at+1:]
	}
	return scheme + "://" + user + "sentinel" + tail, strings.Split(authority, ",")
}

func sentinelOption(u *url.URL, hosts []string) (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	q := u.Query()
	opt.Sentinel.MasterSet = q.Get("sentinel_master_name")
	if opt.Sentinel.MasterSet == "" {
		return opt, fmt.Errorf("redis address: %s needs sentinel_master_name", u.Scheme)
	}
	hosts = append(hosts, q["addr"]...)
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(h, "26379")
		}
		opt.InitAddress = append(opt.InitAddress, h)
	}
	if len(opt.InitAddress) == 0 {
		return opt, fmt.Errorf("redis address: %s names no sentinel host", u.Scheme)
	}
	if u.User != nil {
		opt.Username = u.User.Username()
		opt.Password, _ = u.User.Password()
	}
	opt.Sentinel.Username = q.Get("sentinel_user")
	opt.Sentinel.Password = q.Get("sentinel_password")
	if p := strings.Trim(u.Path, "/"); p != "" {
		db, err := strconv.Atoi(p)
		if err != nil {
			return opt, fmt.Errorf("redis address: invalid database %q", p)
		}
		opt.SelectDB = db
	}
	if q.Has("db") {
		db, err := strconv.Atoi(q.Get("db"))
		if err != nil {
			return opt, fmt.Errorf("redis address: invalid database %q", q.Get("db"))
		}
		opt.SelectDB = db
	}
	if u.Scheme == "rediss+sentinel" {
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return opt, nil
}
