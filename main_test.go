package relay_test

import (
	"os"
	"testing"

	"github.com/go-relay/relay/internal/testkit/redistest"
)

// TestMain makes the README and telemetry tests that skip for want of a Redis
// server fail the package with one line that says so (see redistest.Main).
func TestMain(m *testing.M) { os.Exit(redistest.Main(m).Run()) }
