//go:build !linux

package benchmarks

import (
	"os"
	"syscall"
)

func procAttr() *syscall.SysProcAttr { return nil }

// maxRSS is not measured outside Linux.
func maxRSS(*os.ProcessState) int64 { return 0 }
