package kube

import "syscall"

// sysProcAttr makes the kernel kill etcd and kube-apiserver when the test
// process dies, so an interrupted `go test` leaves no servers behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
