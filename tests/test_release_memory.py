"""Between the models of a long process: Keras' state and the allocator's free memory are handed back."""

from __future__ import annotations

import os


from cnnlab.runtime import ALLOCATOR_ENVIRONMENT
from process_helpers import json_from_a_fresh_process, needs_proc_status


@needs_proc_status
def test_freed_memory_goes_back_to_the_system_under_the_tuned_allocator():
    # A fresh process with the allocator settings that keep freed memory (as the CLI runs).
    code = ("import json\nfrom cnnlab.runtime import return_freed_memory\n"
            "def resident():\n"
            "    return next(int(line.split()[1]) // 1024 for line in open('/proc/self/status') if line.startswith('VmRSS'))\n"
            "blocks = [bytearray(b'x' * (1 << 20)) for _ in range(300)]  # 300 MB in small allocations\n"
            "held = resident()\ndel blocks\nkept = resident()\nreturn_freed_memory()\n"
            "print(json.dumps([held, kept, resident()]))\n")
    environment = {**os.environ, **ALLOCATOR_ENVIRONMENT, "CNNLAB_ALLOCATOR_APPLIED": "1"}
    held, kept, returned = json_from_a_fresh_process(code, environment)
    assert kept > held - 50  # the tuned allocator kept the freed 300 MB
    assert returned < held - 250  # and handed it back when asked


def test_forgetting_finished_models_restarts_names_and_keeps_the_set_up():
    # In a fresh process: clearing Keras' state here would rename the layers of models that other
    # tests in this process build later.
    code = ("import json\nfrom cnnlab.backend import forget_finished_models, keras\n"
            "layout = keras.config.image_data_format()\n"
            "keras.layers.Dense(2)\nsecond = keras.layers.Dense(2).name\n"
            "forget_finished_models()\n"
            "print(json.dumps([second, keras.layers.Dense(2).name, layout, keras.config.image_data_format()]))\n")
    second, after, layout_before, layout_after = json_from_a_fresh_process(code)
    assert second == "dense_1" and after == "dense"  # named as in a fresh process
    assert layout_after == layout_before == "channels_first"  # cnnlab's set-up on PyTorch is kept
