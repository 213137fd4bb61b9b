package benchmarks

import (
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writeChart draws the throughput table as a PNG: one panel per system,
// grouped bars per case, one bar per face (missing ones left out).
func writeChart(path string, s summary) error {
	const barWidth = vg.Length(14)
	rows := make([][]*plot.Plot, len(Systems))
	for i, sys := range Systems {
		p := plot.New()
		p.Title.Text = sys
		p.Y.Label.Text = "thousand messages/s"
		p.Y.Min = 0
		p.Legend.Top = true
		p.NominalX(ThroughputCases...)
		for j, face := range Faces {
			vals := make(plotter.Values, len(ThroughputCases))
			found := false
			for k, cas := range ThroughputCases {
				if r, ok := s.get(sys, face, cas); ok {
					vals[k], found = r.Rate()/1000, true
				}
			}
			if !found {
				continue
			}
			bars, err := plotter.NewBarChart(vals, barWidth)
			if err != nil {
				return err
			}
			bars.LineStyle.Width = 0
			bars.Color = plotutil.Color(j)
			bars.Offset = barWidth * vg.Length(2*j-len(Faces)+1) / 2
			p.Add(bars)
			p.Legend.Add(face, bars)
		}
		rows[i] = []*plot.Plot{p}
	}
	img := vgimg.New(vg.Points(900), vg.Points(float64(300*len(rows))))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(rows), Cols: 1, PadX: vg.Millimeter * 2, PadY: vg.Millimeter * 2,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(rows, tiles, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
