package benchmarks

import (
	"os"
	"strconv"

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
	return writePNG(path, img)
}

// writeScalingChart draws the scaling case: one row per system, one column
// per payload size, messages/s against publisher goroutines (log scale) with
// a line for relay's byte face and one for the floor. It writes nothing when
// the summary holds no scaling cell.
func writeScalingChart(path string, sc ScaleConfig, s summary) error {
	var systems []string
	for _, sys := range Systems {
		if hasScaling(s, sys) {
			systems = append(systems, sys)
		}
	}
	if len(systems) == 0 || len(sc.Payloads) == 0 {
		return nil
	}
	ticks := make([]plot.Tick, len(sc.Publishers))
	for i, p := range sc.Publishers {
		ticks[i] = plot.Tick{Value: float64(p), Label: strconv.Itoa(p)}
	}
	rows := make([][]*plot.Plot, len(systems))
	for i, sys := range systems {
		rows[i] = make([]*plot.Plot, len(sc.Payloads))
		for j, size := range sc.Payloads {
			p := plot.New()
			p.Title.Text = sys + ", " + sizeName(size)
			p.X.Label.Text = "publisher goroutines"
			p.X.Scale = plot.LogScale{}
			p.X.Tick.Marker = plot.ConstantTicks(ticks)
			p.Y.Label.Text = "thousand messages/s"
			p.Y.Min = 0
			p.Legend.Top = true
			for k, face := range []string{FaceBytes, scaleFloor(sys)} {
				var pts plotter.XYs
				for _, pubs := range sc.Publishers {
					if r, ok := s.get(sys, face, ScalingCell(pubs, size)); ok {
						pts = append(pts, plotter.XY{X: float64(pubs), Y: r.Rate() / 1000})
					}
				}
				if len(pts) == 0 {
					continue
				}
				line, points, err := plotter.NewLinePoints(pts)
				if err != nil {
					return err
				}
				line.Color = plotutil.Color(k)
				points.Color = plotutil.Color(k)
				points.Shape = plotutil.Shape(k)
				p.Add(line, points)
				name := face
				if face != FaceBytes {
					name = scaleFloorName(sys)
				}
				p.Legend.Add(name, line, points)
			}
			rows[i][j] = p
		}
	}
	img := vgimg.New(vg.Points(float64(330*len(sc.Payloads))), vg.Points(float64(260*len(rows))))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(rows), Cols: len(sc.Payloads), PadX: vg.Millimeter * 3, PadY: vg.Millimeter * 3,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(rows, tiles, dc)
	for i := range rows {
		for j := range rows[i] {
			rows[i][j].Draw(canvases[i][j])
		}
	}
	return writePNG(path, img)
}

func writePNG(path string, img *vgimg.Canvas) error {
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
