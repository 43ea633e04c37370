package relay

// ErrorCode is the code of a native ERROR message and of the ISSUN
// profile's SwitchboardError answer. The server maps its domain errors to
// these in one table (internal/relay/errors.go).
type ErrorCode uint16

// Error codes. 1-9 follow the server's domain error codes; 100 and above
// are finer conditions of the relay.
const (
	ErrCodeInvalid          ErrorCode = 1
	ErrCodeUnauthorized     ErrorCode = 2
	ErrCodePermissionDenied ErrorCode = 3
	ErrCodeNotFound         ErrorCode = 4
	ErrCodeConflict         ErrorCode = 5
	ErrCodeLimitExceeded    ErrorCode = 6
	ErrCodeUnavailable      ErrorCode = 7
	ErrCodeTimeout          ErrorCode = 8
	ErrCodeInternal         ErrorCode = 9

	ErrCodeRoomFull     ErrorCode = 100 // the room has its maximum of members
	ErrCodeTooManyRooms ErrorCode = 101 // the connection is in its maximum of rooms
	ErrCodeNotInRoom    ErrorCode = 102 // the request names a room the connection is not in
	ErrCodeTokenExpired ErrorCode = 103
)
