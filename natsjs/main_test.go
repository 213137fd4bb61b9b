package natsjs_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/go-relay/relay/pubsubtest"
)

// TestMain checks that no goroutine outlives the tests. Nothing of relay,
// nats.go or the server is ignored: every embedded server is shut down (and
// waited for) in its test's cleanup, and every client connection is closed
// there too. Only two goroutines of Watermill's own universal suite are
// (pubsubtest.WatermillSuiteLeaks says why); the CI run of 2026-12-03 failed
// on 30 of them after every test had passed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, pubsubtest.WatermillSuiteLeaks()...) }
