package natsjs_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/go-relay/relay/pubsubtest"
)

// TestMain checks that no goroutine outlives the tests. Nothing of relay or
// nats.go is ignored: every embedded server is shut down (and waited for) in
// its test's cleanup, and every client connection is closed there too. Two
// goroutines of Watermill's own universal suite are
// (pubsubtest.WatermillSuiteLeaks says why; the CI run of 2026-12-03 failed
// on 30 of them after every test had passed), and so is the file store that
// nats-server v2.15.2 can leave behind when a cluster node restarted by a
// failover case creates a stream's store while the cluster shuts down: its
// state-flushing loop and the access-time ticker it registered (seen once in
// a loaded run of the cluster cases, after Shutdown and WaitForShutdown of
// every node had returned).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(pubsubtest.WatermillSuiteLeaks(),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"))...)
}
