#!/bin/bash
# screening: 4 x 500, 10 epochs, tuned on a 10K validation split
cd /work/main
export HINTON_MNIST_DIR=../shared/mnist
B="--layer-sizes 784,500,500,500,500 --n-epochs 10 --val-split 10000 --full-test --quiet --predict-mode all"
run() { name=$1; shift; [ -f runs/screen/$name.json ] || python3 ff_label_in_input.py $B "$@" --metrics runs/screen/$name.json; python3 -c "
import json; m=json.load(open('runs/screen/$name.json')); print('$name', {k: round(v*100,2) for k,v in m['prediction_modes'].items()}, m['dead_units'], round(m['train_seconds']), [round(a-b,2) for a,b in zip(m['final_layer_stats']['g_pos'], m['final_layer_stats']['g_neg'])])"; }
run base
run deeplr0.1 --deep-lr-scale 0.1
run peer0.03 --peer-norm 0.03
run cooldown --lr-schedule cooldown
run hard --neg-sampling hard
run deeplr0.1_cool --deep-lr-scale 0.1 --lr-schedule cooldown
run peer0.3 --peer-norm 0.3
run lr0.001 --lr 0.001
