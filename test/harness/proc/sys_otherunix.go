//go:build unix && !linux

package proc

import "syscall"

// sysProcAttr puts the child in a process group of its own, so Stop reaches
// anything it spawns. Only Linux can tie the child's life to ours.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
