#!/bin/bash
# screening: 4 x 500, 10 epochs, tuned on a 10K validation split
cd /work/main
export HINTON_MNIST_DIR=../shared/mnist
B="--layer-sizes 784,500,500,500,500 --n-epochs 10 --val-split 10000 --full-test --quiet --predict-mode all"
run() { name=$1; shift; [ -f runs/screen/$name.json ] || python3 ff_label_in_input.py $B "$@" --metrics runs/screen/$name.json; python3 -c "
import json; m=json.load(open('runs/screen/$name.json')); print('$name', {k: round(v*100,2) for k,v in m['prediction_modes'].items()}, m['dead_units'], round(m['train_seconds']), [round(a-b,2) for a,b in zip(m['final_layer_stats']['g_pos'], m['final_layer_stats']['g_neg'])])"; }
while pgrep -f "runs/screen/run2.sh" >/dev/null; do sleep 2; done
run sum_cool --goodness sum --threshold 1 --lr-schedule cooldown
run sum_cool_hardfirst --goodness sum --threshold 1 --lr-schedule cooldown --neg-sampling hard-first
run sum_cool_lr0.001 --goodness sum --threshold 1 --lr-schedule cooldown --lr 0.001
run sum_cool_lr0.01 --goodness sum --threshold 1 --lr-schedule cooldown --lr 0.01
run sum_cool_t2 --goodness sum --threshold 2 --lr-schedule cooldown
run sum_cool_peer0.03 --goodness sum --threshold 1 --lr-schedule cooldown --peer-norm 0.03
