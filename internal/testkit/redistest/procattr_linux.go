package redistest

import "syscall"

// sysProcAttr makes the kernel kill redis-server if the test process dies
// without running its cleanups.
func sysProcAttr() *syscall.SysProcAttr {
	// Setpgid keeps a terminal's Ctrl-C (sent to the foreground process group)
	// from killing the server before the program using it has shut down.
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
