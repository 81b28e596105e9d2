#!/bin/sh
# A stand-in evaluation for the README: reads the data file shipped beside it.
echo "eval: $(wc -l < data.txt) examples, task $IRIS_TASK_INDEX"
