package natsjs_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the tests. Nothing is ignored:
// every embedded server is shut down (and waited for) in its test's cleanup,
// and every client connection is closed there too, so neither the server's
// nor nats.go's goroutines remain at the end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
