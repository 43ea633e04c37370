// Package relay is the wire format of the Switchboard game relay, shared by
// the server (internal/relay), the Go client and the tests. It imports
// nothing of Switchboard.
//
// Every message is a frame: an 8-byte header followed by a body.
//
//	offset 0  2 bytes  magic "IS" (0x49 0x53)
//	offset 2  1 byte   version: 1 = ISSUN profile, 2 = native protocol
//	offset 3  1 byte   frame type (FrameEvent, FrameHeartbeat, …)
//	offset 4  4 bytes  body length, little-endian
//
// Version 1 frames are byte-compatible with ISSUN 0.10 clients: an event
// body is a bincode-1 RawNetworkEvent (Event, ParseEvent). Version 2 bodies
// are bincode-1 (fixed-width little-endian integers, u64 length prefixes,
// u8 booleans and option tags) encodings of the native protocol's messages
// (messages.go), so Rust clients can use serde with bincode 1.
//
// Decoding is strict and bounded: a body longer than the caller's cap, a
// declared length beyond the bytes present (a 4 GiB length included), a bad
// magic, an unknown version or type, a string that is not UTF-8, a type
// name beyond its cap, a boolean other than 0 or 1 and trailing bytes after
// a native message are errors wrapping the sentinels of errors.go. No
// decoder allocates more than the input it was given.
package relay
