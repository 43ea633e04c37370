// Package console serves the live web console at /console: a page built
// into the binary (embedded HTML, CSS and JavaScript, no external CDN) that
// signs in with the administrator's password or a user's hub token, gets a
// short-lived hub connection token whose channels claim subscribes it
// server-side to the scheduler's feeds, and shows nodes, jobs and hub
// figures live over the hub's own Centrifugo JSON protocol.
//
// Routes (all under Prefix):
//
//	GET  /console, /console/     the page
//	GET  /console/assets/{file}  its script and style sheet
//	POST /console/api/login      {"password"} or {"token"} → session cookie
//	POST /console/api/logout     clears the cookie
//	GET  /console/api/session    who is signed in + a fresh hub token
//	POST /console/api/token      a user API token (Bearer for /jobs, /nodes)
//	GET  /console/api/jobs       every job (administrator)
//	GET  /console/api/nodes      every node (administrator)
//	POST /console/api/cancel     {"jobId"}: cancel any job (administrator)
//	GET  /console/api/hub        the hub figures now (administrator)
//
// Sessions are stateless: the cookie holds the role, the user and the
// expiry, signed with HMAC-SHA256 under Config.Secret; it is HttpOnly,
// SameSite=Strict and Path=/console. Changing the secret signs everyone
// out. Failed sign-ins are limited per client address.
//
// The console owns one goroutine, the hub figures publisher (FeedChannel,
// every Config.FeedInterval); Shutdown stops it and waits for it.
package console
