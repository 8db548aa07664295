package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// browser starts headless Chromium (Debian's chromium package; .ci/run
// installs it) and skips the test when there is none.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("no Chromium on PATH: apt-get install -y chromium (the dashboard test drives a real browser)")
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]), chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1000))
	// Chromium sometimes exits before it listens when the machine is busy
	// (go test ./... runs the packages at once); that is the browser's
	// start, not the dashboard, so a second start is allowed.
	var err error
	for try := range 2 {
		actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelB := chromedp.NewContext(actx)
		if err = chromedp.Do(ctx); err == nil { // starts the browser
			t.Cleanup(func() { cancelB(); cancelA() })
			return ctx
		}
		cancelB()
		cancelA()
		t.Logf("start %s, try %d: %v", path, try+1, err)
	}
	t.Fatalf("start %s: %v", path, err)
	return nil
}

// pageView is what the test reads from the rendered page.
type pageView struct {
	Peers      []string `json:"peers"`      // data-peer of the swarm table's rows
	LossPoints int      `json:"lossPoints"` // data-points of the loss chart
	LossLine   string   `json:"lossLine"`   // the loss polyline's points
	Step       string   `json:"step"`
	Conn       string   `json:"conn"` // the page's own error line
}

const readPage = `(() => {
  const svg = document.querySelector("#chart-loss svg");
  const line = document.querySelector("#chart-loss polyline");
  return {
    peers: [...document.querySelectorAll("#swarm tbody tr")].map(tr => tr.dataset.peer),
    lossPoints: svg ? Number(svg.getAttribute("data-points")) : 0,
    lossLine: line ? line.getAttribute("points") : "",
    step: document.getElementById("step").textContent,
    conn: document.getElementById("conn").textContent,
  };
})()`

// The dashboard in a real browser: a 2-node swarm, the page of one node
// shows both peers (the other from its heartbeats) and a loss curve.
func TestDashboardInBrowser(t *testing.T) {
	ctx := browser(t)
	sw, data := newMemSwarm(), tinyData(t)
	nodes := swarmOf(t, sw, data, 2, 100000, func(c *Config) { c.HTTP = "127.0.0.1:0" })
	var url string
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		var info Info
		b, err := os.ReadFile(nodes[0].n.cfg.Dir + "/node.json")
		if err != nil || json.Unmarshal(b, &info) != nil || info.HTTP == "" {
			return fmt.Errorf("node.json names no --http address yet")
		}
		url = "http://" + info.HTTP + "/"
		return nil
	})
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	want := []string{nodes[0].n.ID().String(), nodes[1].n.ID().String()}
	var v pageView
	testutil.CheckFor(t, 45*time.Second, 250*time.Millisecond, func() error {
		var err error
		if v, err = chromedp.Run(ctx, chromedp.Evaluate[pageView](readPage)); err != nil {
			return err
		}
		for _, p := range want {
			if !slices.Contains(v.Peers, p) {
				return fmt.Errorf("the swarm table lists %v, lacks %s (page says %q)", v.Peers, p, v.Conn)
			}
		}
		if v.LossPoints < 2 || v.LossLine == "" {
			return fmt.Errorf("the loss chart has %d points (line %q)", v.LossPoints, v.LossLine)
		}
		if v.Conn != "" {
			return fmt.Errorf("the page reports %q", v.Conn)
		}
		return nil
	})
	t.Logf("page at step %s: %d peers, %d loss points", v.Step, len(v.Peers), v.LossPoints)
}

// TestDashboardScreenshot saves a PNG of the dashboard at
// SWARMTRAIN_SCREENSHOT_URL to SWARMTRAIN_SCREENSHOT_OUT, once its
// charts have points: how docs/dashboard.png is made (see README).
func TestDashboardScreenshot(t *testing.T) {
	url, out := os.Getenv("SWARMTRAIN_SCREENSHOT_URL"), os.Getenv("SWARMTRAIN_SCREENSHOT_OUT")
	if url == "" || out == "" {
		t.Skip("set SWARMTRAIN_SCREENSHOT_URL and SWARMTRAIN_SCREENSHOT_OUT to take a screenshot")
	}
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 30*time.Second, 250*time.Millisecond, func() error {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[pageView](readPage))
		if err != nil {
			return err
		}
		if v.LossPoints < 5 {
			return fmt.Errorf("loss chart has %d points", v.LossPoints)
		}
		return nil
	})
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", out, len(png))
}
