package forest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

// fixCRC rewrites the trailing checksum of a binary model after a test
// changed its body on purpose.
func fixCRC(b []byte) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
	return b
}

func binaryModel(t testing.TB, m *Model) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := m.SaveBinary(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBinaryRoundTrip(t *testing.T) {
	d := synthetic(500, 2, 4)
	cfg := Config{Trees: 15, MinSamplesLeaf: 2, Bootstrap: true, Seed: 11}
	f := train(t, d, cfg)
	jsonBytes := modelBytes(t, d, f, cfg)
	m, err := Load(bytes.NewReader(jsonBytes))
	if err != nil {
		t.Fatal(err)
	}
	m.Config = cfg
	bin := binaryModel(t, m)
	if len(bin) >= len(jsonBytes) {
		t.Errorf("binary %d bytes, JSON %d", len(bin), len(jsonBytes))
	}
	mb, err := Load(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	if !sameNodes(mb.Forest.nodes, f.nodes) || !bytes.Equal(f64bytes(mb.Forest.values), f64bytes(f.values)) ||
		mb.DataHash != m.DataHash || mb.FeatureSet != "test-v1" || mb.Config.Seed != 11 {
		t.Fatal("binary round trip changed the model")
	}
	// Binary -> JSON gives the original JSON; binary -> binary is stable.
	var again bytes.Buffer
	mb.Config = cfg
	if err := mb.Save(&again); err != nil || !bytes.Equal(again.Bytes(), jsonBytes) {
		t.Fatalf("JSON from binary differs (%v)", err)
	}
	if !bytes.Equal(binaryModel(t, mb), bin) {
		t.Fatal("binary save is not stable")
	}
}

func f64bytes(v []float64) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, uint64(int64(x*1e15)))
	}
	return b
}

func TestBinaryRejects(t *testing.T) {
	m, err := Load(strings.NewReader(smallModel))
	if err != nil {
		t.Fatal(err)
	}
	good := binaryModel(t, m)
	// Offsets: magic 8, version 4, header length 4, header, 4 x u32 counts,
	// importances, then tree 0: node count and 3 nodes of 12 bytes.
	hl := int(binary.LittleEndian.Uint32(good[12:]))
	tree := 16 + hl + 16 + 8*2 // start of tree 0's node count
	node := func(i int) int { return tree + 4 + i*binaryNodeSize }
	mut := func(off int, v uint32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[off:], v)
		return fixCRC(b)
	}
	if got := binary.LittleEndian.Uint32(good[tree:]); got != 3 {
		t.Fatalf("test bug: tree 0 has %d nodes", got)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x10
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"truncated", good[:len(good)-9], ErrCorrupt},
		{"magic only", []byte(binaryMagic), ErrCorrupt},
		{"flipped bit", flipped, ErrCorrupt},
		{"version", mut(8, 2), ErrVersion},
		{"header length", mut(12, 1<<30), ErrCorrupt},
		{"class count", mut(16+hl+4, 3), ErrCorrupt},
		{"value count huge", mut(16+hl+12, 1<<28), ErrCorrupt},
		{"node count", mut(tree, 4), ErrCorrupt},
		{"right child past end", mut(node(0)+8, 3), ErrCorrupt},
		{"right child is left", mut(node(0)+8, 1), ErrCorrupt},
		{"right child is self", mut(node(0)+8, 0), ErrCorrupt},
		{"feature out of range", mut(node(0), 2), ErrCorrupt},
		{"leaf class out of range", mut(node(1)+8, 2), ErrCorrupt},
		{"leaf offset out of range", mut(node(2)+8, uint32(0xffffffff-5)), ErrCorrupt},
		{"leaf flags", mut(node(1), leafBit|nanLeftBit), ErrCorrupt},
		{"NaN threshold", mut(node(0)+4, 0x7fc00000), ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Load(bytes.NewReader(c.b))
			if err == nil {
				t.Fatalf("accepted: %+v", m)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

// FuzzLoadBinary mangles binary model files and repairs their checksum, so
// that the structural checks (not only the CRC) meet the damage.
func FuzzLoadBinary(f *testing.F) {
	m, err := Load(strings.NewReader(smallModel))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(binaryModel(f, m))
	d := synthetic(60, 1, 5)
	tr, _ := Train(t0(), d, Config{Trees: 2, MaxDepth: 3, Bootstrap: true})
	f.Add(binaryModel(f, &Model{Kind: KindLoadwatch, Features: d.Features, Classes: d.Classes, Forest: tr}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4 && isBinary(data) {
			data = fixCRC(data)
		}
		m, err := Load(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFormat) && !errors.Is(err, ErrVersion) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		x := make([]float32, m.Forest.NumFeatures())
		for _, v := range []float32{0, nan, -1e30} {
			for i := range x {
				x[i] = v
			}
			if c, _ := m.Forest.Predict(x); c < 0 || c >= m.Forest.NumClasses() {
				t.Fatalf("class %d", c)
			}
		}
		var out bytes.Buffer
		if err := m.SaveBinary(&out); err != nil {
			t.Fatalf("accepted model does not save: %v", err)
		}
		if _, err := Load(&out); err != nil {
			t.Fatalf("saved model does not load: %v", err)
		}
		// Whatever loads from binary converts to JSON and back.
		out.Reset()
		if err := m.Save(&out); err != nil {
			t.Fatalf("accepted binary model does not save as JSON: %v", err)
		}
		if _, err := Load(&out); err != nil {
			t.Fatalf("JSON of a binary model does not load: %v", err)
		}
	})
}
