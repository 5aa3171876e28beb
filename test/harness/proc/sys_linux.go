package proc

import "syscall"

// sysProcAttr puts the child in a process group of its own, so Stop reaches
// anything it spawns, and has the kernel SIGKILL it when the test process
// dies, so an interrupted `go test` leaves no servers behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
