//go:build unix

package proc

import (
	"os"
	"syscall"
)

func terminate(p *os.Process) error { return signalGroup(p, syscall.SIGTERM) }

func kill(p *os.Process) error { return signalGroup(p, syscall.SIGKILL) }

// signalGroup signals the child's whole process group (see sysProcAttr).
func signalGroup(p *os.Process, sig syscall.Signal) error {
	err := syscall.Kill(-p.Pid, sig)
	if err == syscall.ESRCH {
		return nil // the whole group is gone already
	}
	return err
}
