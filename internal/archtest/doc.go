// Package archtest holds tests of the project's structure: which packages
// may import which. It has no code of its own.
package archtest
