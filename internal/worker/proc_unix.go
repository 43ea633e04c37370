//go:build unix

package worker

import (
	"errors"
	"os/exec"
	"syscall"

	"github.com/prometheus/procfs"
)

// setProcAttr puts the worker in its own process group so that a kill
// reaches the processes it started and a terminal's Ctrl-C reaches only the
// server, which then shuts the workers down gracefully.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killProc kills the worker's process group.
func killProc(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		_ = cmd.Process.Kill()
	}
}

// rssBytes reads VmRSS from /proc/PID/status (Linux).
func rssBytes(pid int) (int64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0, err
	}
	if st.VmRSS == 0 {
		return 0, errors.New("no VmRSS in /proc status")
	}
	return int64(st.VmRSS), nil
}
