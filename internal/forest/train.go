package forest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
)

// Dataset is a labelled training set.
type Dataset struct {
	X         []float32 // row-major, len(Y) x NFeatures; NaN = not measured
	NFeatures int
	Y         []int32  // class index per row, 0 <= Y[i] < len(Classes)
	Classes   []string // class names
	Features  []string // feature names (optional; len NFeatures when set)
	Groups    []int32  // optional group per row (for cross-validation; unused by Train)
}

// Rows returns the number of rows.
func (d Dataset) Rows() int { return len(d.Y) }

// Subset returns a new dataset holding the given rows, in that order (a
// row may repeat), for cross-validation folds. Names are shared.
func (d Dataset) Subset(rows []int) Dataset {
	s := Dataset{NFeatures: d.NFeatures, Classes: d.Classes, Features: d.Features,
		X: make([]float32, 0, len(rows)*d.NFeatures), Y: make([]int32, 0, len(rows))}
	if d.Groups != nil {
		s.Groups = make([]int32, 0, len(rows))
	}
	for _, r := range rows {
		s.X = append(s.X, d.X[r*d.NFeatures:(r+1)*d.NFeatures]...)
		s.Y = append(s.Y, d.Y[r])
		if d.Groups != nil {
			s.Groups = append(s.Groups, d.Groups[r])
		}
	}
	return s
}

// Validate checks the shapes, the labels and that no value is infinite
// (as scikit-learn, training refuses +-Inf; NaN means "not measured").
func (d Dataset) Validate() error {
	if d.NFeatures <= 0 || d.NFeatures > maxFeatures {
		return fmt.Errorf("forest: dataset has %d features", d.NFeatures)
	}
	if len(d.Classes) == 0 {
		return errors.New("forest: dataset has no classes")
	}
	if len(d.Y) == 0 {
		return errors.New("forest: dataset has no rows")
	}
	if len(d.X) != len(d.Y)*d.NFeatures {
		return fmt.Errorf("forest: dataset X has %d values, want %d rows x %d features", len(d.X), len(d.Y), d.NFeatures)
	}
	if d.Features != nil && len(d.Features) != d.NFeatures {
		return fmt.Errorf("forest: dataset names %d features, has %d", len(d.Features), d.NFeatures)
	}
	if d.Groups != nil && len(d.Groups) != len(d.Y) {
		return fmt.Errorf("forest: dataset has %d groups for %d rows", len(d.Groups), len(d.Y))
	}
	for i, y := range d.Y {
		if y < 0 || int(y) >= len(d.Classes) {
			return fmt.Errorf("forest: row %d has class %d, want 0..%d", i, y, len(d.Classes)-1)
		}
	}
	for k, v := range d.X {
		if math.IsInf(float64(v), 0) {
			return fmt.Errorf("forest: row %d feature %d is infinite (use NaN for not measured)", k/d.NFeatures, k%d.NFeatures)
		}
	}
	return nil
}

// Config controls training. Zero fields mean the documented default, except
// Bootstrap (use DefaultConfig for the usual settings).
type Config struct {
	Trees           int    `json:"trees"`             // number of trees; 0 = 100
	MaxDepth        int    `json:"max_depth"`         // 0 = unlimited
	MinSamplesLeaf  int    `json:"min_samples_leaf"`  // distinct rows per leaf; 0 = 1
	MinSamplesSplit int    `json:"min_samples_split"` // distinct rows to split a node; 0 = 2
	MaxFeatures     int    `json:"max_features"`      // features tried per split; 0 = sqrt(n), <0 or >n = all
	Bootstrap       bool   `json:"bootstrap"`         // sample rows with replacement per tree
	ClassWeight     string `json:"class_weight"`      // "" (equal) or "balanced" (n / (k * count))
	Seed            uint64 `json:"seed"`
	// Workers is the number of trees trained at once; 0 = GOMAXPROCS. It
	// does not change the result.
	Workers int `json:"-"`
	// Progress, when set, is called after each finished tree (never
	// concurrently) with the number done so far.
	Progress func(done, total int) `json:"-"`
}

// DefaultConfig returns scikit-learn's RandomForestClassifier defaults:
// 100 trees, unlimited depth, leaves of at least 1 row, sqrt(n) features
// tried per split, bootstrap on, equal class weights, seed 1.
func DefaultConfig() Config {
	return Config{Trees: 100, MinSamplesLeaf: 1, MinSamplesSplit: 2, Bootstrap: true, Seed: 1}
}

func (c Config) normalized(nFeatures int) (Config, error) {
	if c.Trees == 0 {
		c.Trees = 100
	}
	if c.MinSamplesLeaf == 0 {
		c.MinSamplesLeaf = 1
	}
	if c.MinSamplesSplit == 0 {
		c.MinSamplesSplit = 2
	}
	if c.Trees < 0 || c.MaxDepth < 0 || c.MinSamplesLeaf < 0 || c.MinSamplesSplit < 0 {
		return c, fmt.Errorf("forest: negative setting in %+v", c)
	}
	switch {
	case c.MaxFeatures == 0:
		c.MaxFeatures = max(1, int(math.Sqrt(float64(nFeatures))))
	case c.MaxFeatures < 0 || c.MaxFeatures > nFeatures:
		c.MaxFeatures = nFeatures
	}
	if c.ClassWeight != "" && c.ClassWeight != "balanced" {
		return c, fmt.Errorf("forest: unknown class weight %q (want \"\" or \"balanced\")", c.ClassWeight)
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	c.Workers = min(c.Workers, c.Trees)
	return c, nil
}

// prepared is the read-only training data shared by all workers.
type prepared struct {
	n, nf, nc int
	xc        []float32 // column-major: xc[f*n+i]
	y         []int32
	order     []int32   // per feature, rows sorted by value, NaN last
	cw        []float64 // weight per class
}

// Train grows a forest on d. The result depends only on d and cfg (not on
// cfg.Workers or timing). It stops early with ctx's error when ctx ends.
func Train(ctx context.Context, d Dataset, cfg Config) (*Forest, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.normalized(d.NFeatures)
	if err != nil {
		return nil, err
	}
	p := prepare(d, cfg)

	trees := make([]*tree, cfg.Trees)
	next := make(chan int)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		done   int
		cancel = ctx.Done()
	)
	for range cfg.Workers {
		wg.Go(func() {
			b := newBuilder(p, cfg)
			for t := range next {
				trees[t] = b.grow(t)
				if cfg.Progress != nil {
					mu.Lock()
					done++
					cfg.Progress(done, cfg.Trees)
					mu.Unlock()
				}
			}
		})
	}
feed:
	for t := range cfg.Trees {
		select {
		case next <- t:
		case <-cancel:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("forest: training stopped: %w", err)
	}
	return assemble(p.nf, p.nc, trees), nil
}

func prepare(d Dataset, cfg Config) *prepared {
	n, nf, nc := len(d.Y), d.NFeatures, len(d.Classes)
	p := &prepared{n: n, nf: nf, nc: nc, y: d.Y}
	p.xc = make([]float32, n*nf)
	for i := range n {
		row := d.X[i*nf : (i+1)*nf]
		for f, v := range row {
			p.xc[f*n+i] = v
		}
	}
	p.order = make([]int32, n*nf)
	var wg sync.WaitGroup
	sem := make(chan struct{}, cfg.Workers)
	for f := range nf {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			col := p.xc[f*n : (f+1)*n]
			ord := p.order[f*n : (f+1)*n]
			for i := range ord {
				ord[i] = int32(i)
			}
			slices.SortFunc(ord, func(a, b int32) int {
				va, vb := col[a], col[b]
				na, nb := va != va, vb != vb
				switch {
				case na && nb:
				case na:
					return 1
				case nb:
					return -1
				case va < vb:
					return -1
				case va > vb:
					return 1
				}
				return cmp.Compare(a, b)
			})
		})
	}
	wg.Wait()
	p.cw = make([]float64, nc)
	for c := range p.cw {
		p.cw[c] = 1
	}
	if cfg.ClassWeight == "balanced" {
		count := make([]int, nc)
		for _, y := range d.Y {
			count[y]++
		}
		for c, k := range count {
			if k > 0 {
				p.cw[c] = float64(n) / float64(nc*k)
			}
		}
	}
	return p
}

// tree is one grown tree with tree-local node indices.
type tree struct {
	nodes  []node
	values []float64
	imp    []float64
}

// wy is one row's sample weight and class.
type wy struct {
	w float64
	y int32
}

type builder struct {
	p   *prepared
	cfg Config
	rng *rand.Rand

	w      []float64 // weight per row; 0 = not in this tree's sample
	wy     []wy      // weight and class per row, side by side for the split scan
	m      int       // rows in the sample
	s      []int32   // per feature f: s[f*m : (f+1)*m] rows in value order
	goLeft []bool
	tmp    []int32
	feats  []int

	tot, left, right, nan, best []float64

	t *tree
}

func newBuilder(p *prepared, cfg Config) *builder {
	b := &builder{p: p, cfg: cfg}
	b.w = make([]float64, p.n)
	b.wy = make([]wy, p.n)
	b.s = make([]int32, p.n*p.nf)
	b.goLeft = make([]bool, p.n)
	b.tmp = make([]int32, p.n)
	b.feats = make([]int, p.nf)
	b.tot = make([]float64, p.nc)
	b.left = make([]float64, p.nc)
	b.right = make([]float64, p.nc)
	b.nan = make([]float64, p.nc)
	b.best = make([]float64, p.nc)
	return b
}

func (b *builder) grow(t int) *tree {
	p := b.p
	b.rng = rand.New(rand.NewPCG(b.cfg.Seed, uint64(t)*0x9E3779B97F4A7C15+1))
	clear(b.w)
	if b.cfg.Bootstrap {
		for range p.n {
			b.w[b.rng.IntN(p.n)]++
		}
	} else {
		for i := range b.w {
			b.w[i] = 1
		}
	}
	m := 0
	for i, w := range b.w {
		if w > 0 {
			b.w[i] = w * p.cw[p.y[i]]
			m++
		}
		b.wy[i] = wy{w: b.w[i], y: p.y[i]}
	}
	b.m = m
	for f := range p.nf {
		dst := b.s[f*m : (f+1)*m]
		k := 0
		for _, i := range p.order[f*p.n : (f+1)*p.n] {
			if b.w[i] > 0 {
				dst[k] = i
				k++
			}
		}
	}
	b.t = &tree{imp: make([]float64, p.nf)}
	b.build(0, m, 0)
	tr := b.t
	b.t = nil
	if s := sum(tr.imp); s > 0 {
		for f := range tr.imp {
			tr.imp[f] /= s
		}
	}
	return tr
}

func sum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}

// split is the best split found at a node.
type split struct {
	feat    int
	pos     int // last non-NaN position (in the feature's order) going left
	nanLeft bool
	score   float64
	thr     float32
	wl, wr  float64 // weights left and right
	sql     float64 // sum of squared class weights left
	sqr     float64 // ... and right
}

// build grows the subtree over sample positions [start, end) and returns
// its node index.
func (b *builder) build(start, end, depth int) int32 {
	tot := b.tot
	clear(tot)
	wsum := 0.0
	for _, i := range b.s[start:end] { // feature 0's order: any order will do
		s := b.wy[i]
		w := s.w
		tot[s.y] += w
		wsum += w
	}
	idx := int32(len(b.t.nodes))
	b.t.nodes = append(b.t.nodes, node{})
	nonzero, sq := 0, 0.0
	for _, w := range tot {
		if w > 0 {
			nonzero++
		}
		sq += w * w
	}
	cnt := end - start
	if nonzero <= 1 || cnt < b.cfg.MinSamplesSplit || cnt < 2*b.cfg.MinSamplesLeaf ||
		(b.cfg.MaxDepth > 0 && depth >= b.cfg.MaxDepth) {
		b.leaf(idx, tot, wsum)
		return idx
	}
	sp, ok := b.findSplit(start, end, wsum)
	if !ok {
		b.leaf(idx, tot, wsum)
		return idx
	}
	gini := 1 - sq/(wsum*wsum)
	gl := 1 - sp.sql/(sp.wl*sp.wl)
	gr := 1 - sp.sqr/(sp.wr*sp.wr)
	b.t.imp[sp.feat] += wsum*gini - sp.wl*gl - sp.wr*gr

	nl := b.partition(start, end, sp)
	l := b.build(start, start+nl, depth+1)
	r := b.build(start+nl, end, depth+1)
	if l != idx+1 {
		panic("forest: tree not in pre-order")
	}
	b.t.nodes[idx] = splitNode(sp.feat, sp.nanLeft, sp.thr, r)
	return idx
}

func (b *builder) leaf(idx int32, tot []float64, wsum float64) {
	only, nonzero := 0, 0
	for c, w := range tot {
		if w > 0 {
			only = c
			nonzero++
		}
	}
	if nonzero == 1 {
		b.t.nodes[idx] = pureLeaf(idx, only)
		return
	}
	off := int32(len(b.t.values))
	for _, w := range tot {
		b.t.values = append(b.t.values, w/wsum)
	}
	b.t.nodes[idx] = mixedLeaf(idx, int(off))
}

// findSplit tries up to MaxFeatures non-constant features, drawn at random,
// and returns the split with the highest Gini proxy
// sum_c(L_c^2)/W_L + sum_c(R_c^2)/W_R (equivalent to the lowest weighted
// Gini impurity). For each threshold both destinations of the NaN rows are
// scored, and "all measured left, NaN right" is a candidate too.
func (b *builder) findSplit(start, end int, wsum float64) (split, bool) {
	p := b.p
	nf := p.nf
	for f := range b.feats {
		b.feats[f] = f
	}
	best := split{score: math.Inf(-1)}
	found := false
	visited := 0
	msl := b.cfg.MinSamplesLeaf
	for j := 0; j < nf && visited < b.cfg.MaxFeatures; j++ {
		r := j + b.rng.IntN(nf-j)
		b.feats[j], b.feats[r] = b.feats[r], b.feats[j]
		f := b.feats[j]
		seg := b.s[f*b.m+start : f*b.m+end]
		col := p.xc[f*p.n : (f+1)*p.n]
		nn := len(seg)
		for nn > 0 && col[seg[nn-1]] != col[seg[nn-1]] {
			nn--
		}
		nanCnt := len(seg) - nn
		if nn == 0 || (nanCnt == 0 && col[seg[0]] == col[seg[nn-1]]) {
			continue // constant at this node
		}
		visited++

		L, Rn, N := b.left, b.right, b.nan
		clear(L)
		clear(N)
		wN := 0.0
		for _, i := range seg[nn:] {
			s := b.wy[i]
			N[s.y] += s.w
			wN += s.w
		}
		sqN, sqL, sqRn, dotLN, dotRnN := 0.0, 0.0, 0.0, 0.0, 0.0
		for c := range Rn {
			Rn[c] = b.tot[c] - N[c]
			sqN += N[c] * N[c]
			sqRn += Rn[c] * Rn[c]
			dotRnN += Rn[c] * N[c]
		}
		wL, wRn := 0.0, wsum-wN
		if nanCnt == 0 {
			// The common case, without the NaN bookkeeping: the same
			// arithmetic as below with N = 0.
			v := col[seg[0]]
			for k := 0; k < nn-1; k++ {
				s := b.wy[seg[k]]
				c, wi := s.y, s.w
				sqL += wi * (2*L[c] + wi)
				sqRn += wi * (wi - 2*Rn[c])
				L[c] += wi
				Rn[c] -= wi
				wL += wi
				wRn -= wi
				next := col[seg[k+1]]
				if next <= v {
					continue
				}
				v = next
				if nL := k + 1; nL >= msl && nn-nL >= msl {
					if s := sqL/wL + sqRn/wRn; s > best.score {
						best = split{feat: f, pos: k, score: s, wl: wL, wr: wRn, sql: sqL, sqr: sqRn}
						found = true
					}
				}
			}
			continue
		}
		for k := 0; k < nn; k++ {
			i := seg[k]
			s := b.wy[i]
			c, wi := s.y, s.w
			dotLN += wi * N[c]
			dotRnN -= wi * N[c]
			sqL += wi * (2*L[c] + wi)
			sqRn += wi * (wi - 2*Rn[c])
			L[c] += wi
			Rn[c] -= wi
			wL += wi
			wRn -= wi
			v := col[i]
			if k+1 < nn {
				if col[seg[k+1]] <= v {
					continue
				}
			} else if nanCnt == 0 {
				break
			}
			nL := k + 1
			nRn := nn - nL
			// NaN right.
			if nL >= msl && nRn+nanCnt >= msl {
				wr := wRn + wN
				sqr := sqRn + 2*dotRnN + sqN
				if s := sqL/wL + sqr/wr; s > best.score {
					best = split{feat: f, pos: k, score: s, wl: wL, wr: wr, sql: sqL, sqr: sqr}
					found = true
				}
			}
			// NaN left.
			if nanCnt > 0 && nRn > 0 && nL+nanCnt >= msl && nRn >= msl {
				wl := wL + wN
				sql := sqL + 2*dotLN + sqN
				if s := sql/wl + sqRn/wRn; s > best.score {
					best = split{feat: f, pos: k, nanLeft: true, score: s, wl: wl, wr: wRn, sql: sql, sqr: sqRn}
					found = true
				}
			}
		}
	}
	if !found {
		return best, false
	}
	seg := b.s[best.feat*b.m+start : best.feat*b.m+end]
	col := p.xc[best.feat*p.n : (best.feat+1)*p.n]
	if last := col[seg[len(seg)-1]]; last == last {
		// No NaN reached this node on this feature: a NaN met in prediction
		// follows the heavier side.
		best.nanLeft = best.wl > best.wr
	}
	a := col[seg[best.pos]]
	best.thr = a
	if best.pos+1 < len(seg) {
		if c := col[seg[best.pos+1]]; c == c { // next measured value
			t := float32((float64(a) + float64(c)) / 2)
			if t < c && !math.IsInf(float64(t), 0) {
				best.thr = t
			}
		}
	}
	return best, true
}

// partition reorders every feature's segment [start, end) so that the rows
// going left come first, keeping each side in value order, and returns the
// number going left.
func (b *builder) partition(start, end int, sp split) int {
	p := b.p
	seg := b.s[sp.feat*b.m+start : sp.feat*b.m+end]
	col := p.xc[sp.feat*p.n : (sp.feat+1)*p.n]
	for k, i := range seg {
		v := col[i]
		if v != v {
			b.goLeft[i] = sp.nanLeft
		} else {
			b.goLeft[i] = k <= sp.pos
		}
	}
	nl := 0
	for f := range p.nf {
		seg := b.s[f*b.m+start : f*b.m+end]
		l, r := 0, 0
		for _, i := range seg {
			if b.goLeft[i] {
				seg[l] = i
				l++
			} else {
				b.tmp[r] = i
				r++
			}
		}
		copy(seg[l:], b.tmp[:r])
		nl = l
	}
	return nl
}

// assemble flattens the trees into one node array.
func assemble(nf, nc int, trees []*tree) *Forest {
	f := &Forest{nFeatures: nf, nClasses: nc, importances: make([]float64, nf)}
	total, vals := 0, 0
	for _, t := range trees {
		total += len(t.nodes)
		vals += len(t.values)
	}
	f.nodes = make([]node, 0, total)
	f.values = make([]float64, 0, vals)
	f.roots = make([]int32, 0, len(trees))
	for _, t := range trees {
		base := int32(len(f.nodes))
		vbase := int32(len(f.values))
		f.roots = append(f.roots, base)
		for _, n := range t.nodes {
			if n.isLeaf() && n.isMixed() {
				n = mixedLeaf(n.right, n.offset()+int(vbase))
			}
			n.right += base
			f.nodes = append(f.nodes, n)
		}
		f.values = append(f.values, t.values...)
		if len(t.nodes) > 1 {
			for i, v := range t.imp {
				f.importances[i] += v
			}
		}
	}
	if s := sum(f.importances); s > 0 {
		for i := range f.importances {
			f.importances[i] /= s
		}
	}
	return f
}
