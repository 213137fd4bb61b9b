//go:build !unix

package faulttest

import "time"

// cpuTime is not measured on this platform: zero.
func cpuTime() time.Duration { return 0 }
