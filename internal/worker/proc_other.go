//go:build !unix

package worker

import (
	"errors"
	"os/exec"
)

func setProcAttr(*exec.Cmd) {}

func killProc(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

func rssBytes(int) (int64, error) { return 0, errors.New("rss not supported on this platform") }
