// Package breaktest_test is a cross-backend regression suite of adversarial
// probes: misbehaving handlers, bad input, foreign entries, shutdown races and
// server outages, run against the memory, natsjs and redisstreams backends
// (and the retrier) on real servers. Each test is named after the behaviour it
// guarantees; its doc comment names the defect it guards against.
package breaktest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/go-relay/relay/internal/redistest"
)

// TestMain checks that no goroutine outlives the tests: every broker,
// subscriber, client and server is closed in its test's cleanup.
func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }
