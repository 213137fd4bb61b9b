package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// progress draws a bulk operation's progress on w: a bar redrawn in place
// on a terminal, and otherwise a line at every tenth of the way, so that a
// log keeps a trace without a line per message.
type progress struct {
	w          io.Writer
	verb       string
	total, n   int
	tty        bool
	lastTenth  int
	drawnOnTTY bool
}

func newProgress(w io.Writer, verb string, total int) *progress {
	p := &progress{w: w, verb: verb, total: total}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

// set records that n dead letters are done.
func (p *progress) set(n int) {
	p.n = n
	if p.tty {
		p.draw()
		return
	}
	if p.total == 0 {
		return
	}
	if tenth := 10 * n / p.total; tenth > p.lastTenth {
		p.lastTenth = tenth
		fmt.Fprintf(p.w, "%s: %d/%d\n", p.verb, n, p.total)
	}
}

// note prints a line of its own above the bar.
func (p *progress) note(line string) {
	if p.drawnOnTTY {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	fmt.Fprintln(p.w, line)
	if p.tty {
		p.draw()
	}
}

func (p *progress) draw() {
	const width = 30
	filled := width
	if p.total > 0 {
		filled = width * p.n / p.total
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d", p.verb, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.n, p.total)
	p.drawnOnTTY = true
}

// finish ends the bar's line.
func (p *progress) finish() {
	if p.drawnOnTTY {
		fmt.Fprintln(p.w)
		p.drawnOnTTY = false
	}
}
