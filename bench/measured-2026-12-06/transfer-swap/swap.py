"""DebianDeps turned around: from a package's dependencies (binary features) predict the words of
its description (labels): a real task of another shape (non-text input, 49K labels, ~44 a sample)."""
import sys
src, dst = sys.argv[1], sys.argv[2]
for split in ("train", "test"):
    with open(f"{src}/{split}.txt") as f, open(f"{dst}/{split}.txt", "w") as out:
        n, nf, nl = map(int, f.readline().split())
        rows = []
        for line in f:
            head, _, rest = line.rstrip("\n").partition(" ")
            labels = head.split(",") if head else []
            words = [t.split(":")[0] for t in rest.split()] if rest else []
            if labels and words:
                rows.append((words, labels))
        out.write(f"{len(rows)} {nl} {nf}\n")
        for words, labels in rows:
            out.write(",".join(words) + " " + " ".join(f"{l}:1" for l in sorted(set(labels), key=int)) + "\n")
    print(split, len(rows))
