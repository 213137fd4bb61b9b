package relay_test

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/go-relay/relay/internal/testkit/redistest"
)

const snippetFile = "readme_snippets_test.go"

// snippetMarker precedes every ```go block of README.md and names the
// declaration of snippetFile the block copies: a function name, or "import".
const snippetMarker = "<!-- snippet: " + snippetFile + " "

// readmeBlock is one ```go block of README.md.
type readmeBlock struct {
	line int    // of the opening fence
	name string // from the marker; "" when the marker is missing
	code string // between the fences, each line ending in "\n"
}

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(src), "\n")
	var blocks []readmeBlock
	for i := 0; i < len(lines); i++ {
		if strings.TrimRight(lines[i], "\n") != "```go" {
			continue
		}
		b := readmeBlock{line: i + 1}
		if i > 0 {
			prev := strings.TrimSpace(lines[i-1])
			if name, ok := strings.CutPrefix(prev, snippetMarker); ok {
				b.name = strings.TrimSuffix(name, " -->")
			}
		}
		var code strings.Builder
		for i++; i < len(lines) && strings.TrimRight(lines[i], "\n") != "```"; i++ {
			code.WriteString(lines[i])
		}
		b.code = code.String()
		blocks = append(blocks, b)
	}
	return blocks
}

// snippetDecls returns the source text of every top-level declaration of
// snippetFile, with its doc comment, by name ("import" for the import block).
func snippetDecls(t *testing.T) map[string]string {
	t.Helper()
	src, err := os.ReadFile(snippetFile)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, snippetFile, src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	decls := map[string]string{}
	text := func(from, to token.Pos) string {
		return string(src[fset.Position(from).Offset:fset.Position(to).Offset]) + "\n"
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.GenDecl:
			if d.Tok == token.IMPORT {
				decls["import"] = text(d.Pos(), d.End())
			}
		case *ast.FuncDecl:
			from := d.Pos()
			if d.Doc != nil {
				from = d.Doc.Pos()
			}
			decls[d.Name.Name] = text(from, d.End())
		}
	}
	return decls
}

// TestREADMESnippetsAreThisFile holds README.md to the code that compiles and
// runs: every ```go block must be preceded by a snippet marker and be, byte
// for byte, the declaration it names; every declaration of snippetFile must
// be in the README.
func TestREADMESnippetsAreThisFile(t *testing.T) {
	decls := snippetDecls(t)
	shown := map[string]bool{}
	for _, b := range readmeBlocks(t) {
		if b.name == "" {
			t.Errorf("README.md:%d: a ```go block without a %q…\" -->\" line before it: every Go block must be code of %s",
				b.line, snippetMarker, snippetFile)
			continue
		}
		shown[b.name] = true
		want, ok := decls[b.name]
		if !ok {
			t.Errorf("README.md:%d: %s has no declaration %q", b.line, snippetFile, b.name)
			continue
		}
		if b.code != want {
			t.Errorf("README.md:%d: block %q differs from %s at %s\nwant:\n%s", b.line, b.name, snippetFile,
				firstDifference(b.code, want), want)
		}
	}
	for name := range decls {
		if !shown[name] {
			t.Errorf("%s: %q is in no README.md block", snippetFile, name)
		}
	}
}

// firstDifference says where a and b first differ, by line.
func firstDifference(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(la) && i < len(lb); i++ {
		if la[i] != lb[i] {
			return fmt.Sprintf("line %d of the block: README has %q, the code %q", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("the end: README has %d lines, the code %d", len(la), len(lb))
}

// billed receives every payload bill was called with.
var billed = make(chan string, 16)

// bill is the application's work in the README's snippets.
func bill(payload []byte) error {
	billed <- string(payload)
	return nil
}

// runUntilBilled runs a README snippet until it billed the order it published,
// then cancels its context and checks that it returned nil promptly.
func runUntilBilled(t *testing.T, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	select {
	case got := <-billed:
		if got != `{"id":42}` {
			t.Errorf("billed %q, want the published order", got)
		}
	case err := <-done:
		t.Fatalf("returned %v before billing the order", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the order was not billed within 20s")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("returned %v after its context ended, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("did not return within 20s after its context ended")
	}
}

func TestREADMEByteFace(t *testing.T) {
	runUntilBilled(t, byteFace)
}

func TestREADMEWatermillMemory(t *testing.T) {
	runUntilBilled(t, func(ctx context.Context) error { return watermillMemory(ctx, watermill.NopLogger{}) })
}

// TestREADMEWatermillNATS runs the NATS quick start on the README's own
// embedded server (startNATS), never on NATS_URL: the snippet's fixed topic
// must not meet anything else.
func TestREADMEWatermillNATS(t *testing.T) {
	ns, err := startNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown() // before t.TempDir's removal of the store
	})
	runUntilBilled(t, func(ctx context.Context) error { return watermillNATS(ctx, ns.ClientURL(), watermill.NopLogger{}) })
}

// TestREADMEWatermillRedis runs the Redis quick start on a server of its own
// (redis-server or Docker), never on REDIS_URL (the snippet's topic is fixed).
// Without one it skips, counted by redistest.Main, and fails under CI=true.
func TestREADMEWatermillRedis(t *testing.T) {
	t.Setenv("REDIS_URL", "")
	srv := redistest.Start(t)
	runUntilBilled(t, func(ctx context.Context) error { return watermillRedis(ctx, srv.Addr(), watermill.NopLogger{}) })
}
