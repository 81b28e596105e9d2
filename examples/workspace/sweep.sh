#!/bin/sh
# A stand-in hyperparameter sweep for the README: low priority work that may be preempted.
for lr in 0.1 0.01 0.001; do echo "sweep: lr=$lr"; done
