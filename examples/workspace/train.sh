#!/bin/sh
# A stand-in training step for the README: one task per host of a TPU slice.
echo "train: host ${TPU_WORKER_ID:-?} of ${TPU_NAME:-?}, task $IRIS_TASK_INDEX of $IRIS_NUM_TASKS"
