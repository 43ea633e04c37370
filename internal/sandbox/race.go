//go:build race

package sandbox

// raceFactor widens RLIMIT_DATA under the race detector, whose shadow
// memory counts against it.
const raceFactor = 4
