#!/bin/bash
for i in 1 2 3 4; do
  for which in old mid new; do
    case $which in
      old) T=/work/old-target; D=/work/old;;
      mid) T=/work/mid-target; D=/work/mid;;
      new) T=/work/main/target; D=/work/main;;
    esac
    W=$(ls $T/release/deps/window-* | grep -v '\.d$' | head -1); M=$(ls $T/release/deps/macro-* | grep -v '\.d$' | head -1)
    (cd $D && $W --bench --warm-up-time 1 --measurement-time 3 --noplot) > r4/window-$which-$i.log 2>&1
    (cd $D && $M --bench --warm-up-time 1 --measurement-time 3 --noplot) > r4/macro-$which-$i.log 2>&1
  done
done
echo done
