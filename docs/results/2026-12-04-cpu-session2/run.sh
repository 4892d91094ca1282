#!/bin/bash
# alternate old/new window and macro benches, R rounds
OLDW=/work/target-old/release/deps/window-25d9e04f4ce84e34
OLDM=/work/target-old/release/deps/macro-54ed441d62d7ba89
NEWW=/work/main/target/release/deps/window-da013b069f4e670a
NEWM=/work/main/target/release/deps/macro-447ed172eb64e0cf
for r in 1 2 3; do
  for v in old new; do
    if [ $v = old ]; then W=$OLDW; M=$OLDM; else W=$NEWW; M=$NEWM; fi
    (cd /work/main && $W --bench --warm-up-time 1 --measurement-time 3 --noplot) >> /tmp/bench/window-$v.log 2>&1
    (cd /work/main && $M --bench --warm-up-time 1 --measurement-time 3 --noplot) >> /tmp/bench/macro-$v.log 2>&1
  done
done
echo done
