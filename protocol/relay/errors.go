package relay

import "errors"

// Decoding errors. Every error returned by the decoders of this package
// wraps one of them (errors.Is), with the detail in its message.
var (
	// ErrBadMagic: the frame does not start with "IS".
	ErrBadMagic = errors.New("relay: bad magic")
	// ErrVersion: the frame's version is not the one expected.
	ErrVersion = errors.New("relay: unsupported version")
	// ErrFrameType: the frame type is unknown for its version.
	ErrFrameType = errors.New("relay: unknown frame type")
	// ErrTooLarge: a frame, string or list is longer than allowed.
	ErrTooLarge = errors.New("relay: too large")
	// ErrTruncated: the input ends before the message does.
	ErrTruncated = errors.New("relay: truncated")
	// ErrMalformed: the bytes are present but not a valid message (an
	// unknown enum tag, a boolean that is not 0 or 1, invalid UTF-8,
	// trailing bytes).
	ErrMalformed = errors.New("relay: malformed")
)
