//go:build !linux

package faulttest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
