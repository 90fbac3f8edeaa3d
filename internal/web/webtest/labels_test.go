package webtest

import (
	"context"
	"loadwatch/internal/labels"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// testLabelling selects a span on the power chart, labels it, retrains,
// and activates the new model; the page must show version v1.
func testLabelling(t *testing.T, ctx context.Context, e *env, dir string) {
	pollJS(t, ctx, "base model shown", `document.getElementById("model-info").dataset.version === "base"`, 10*time.Second)
	run(t, ctx, "labelling mode", chromedp.ScrollIntoView(chromedp.CSS("#chart-power")), chromedp.Click(chromedp.CSS("#label-mode")),
		chromedp.ScrollIntoView(chromedp.CSS("#chart-power")))
	box, err := chromedp.Run(ctx, chromedp.Evaluate[struct{ X, Y, W, H float64 }](`(() => { const r = document.querySelector("#chart-power .u-over").getBoundingClientRect(); return {X: r.left, Y: r.top, W: r.width, H: r.height}; })()`))
	if err != nil {
		t.Fatal(err)
	}
	y := box.Y + box.H/2
	x1, x2 := box.X+box.W*0.15, box.X+box.W*0.9
	run(t, ctx, "drag a span",
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x1, y),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, x1, y, chromedp.ButtonLeft, chromedp.ClickCount(1)),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, (x1+x2)/2, y, chromedp.ButtonLeft),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x2, y, chromedp.ButtonLeft),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, x2, y, chromedp.ButtonLeft, chromedp.ClickCount(1)),
	)
	pollJS(t, ctx, "span picked", `document.getElementById("label-from").value !== "" && !document.getElementById("label-save").disabled`, 5*time.Second)
	run(t, ctx, "label it", chromedp.SendKeys(chromedp.CSS("#label-name"), "kettle"), chromedp.Click(chromedp.CSS("#label-save")))
	pollJS(t, ctx, "label listed", `/kettle/.test(document.querySelector("#labels tbody").innerText)`, 10*time.Second)
	run(t, ctx, "retrain", chromedp.Click(chromedp.CSS("#retrain")))
	pollJS(t, ctx, "candidate ready", `!document.getElementById("activate").classList.contains("hidden")`, 30*time.Second)
	pollJS(t, ctx, "evaluation shown", `/Accuracy/.test(document.getElementById("retrain-eval").innerText) && document.getElementById("retrain-progress").value === 1`, 5*time.Second)
	screenshot(t, ctx, dir, "retrain.png")
	run(t, ctx, "activate", chromedp.Click(chromedp.CSS("#activate")))
	pollJS(t, ctx, "new model version in use", `document.getElementById("model-info").dataset.version === "v1"`, 10*time.Second)
	if l := e.Holder.Current(); l == nil || filepath.Base(l.Source) != "model-v1.json" {
		t.Fatalf("holder model after activation: %+v", l)
	}
	if p, ok := labels.ActiveModel(filepath.Join(e.Dir, "models")); !ok || filepath.Base(p) != "model-v1.json" {
		t.Errorf("ACTIVE after activation: %q %v", p, ok)
	}
	found := false
	for _, c := range e.Holder.Current().Model.Classes {
		found = found || c == "kettle"
	}
	if !found {
		t.Errorf("the new model lacks the labelled class: %v", e.Holder.Current().Model.Classes)
	}
}
