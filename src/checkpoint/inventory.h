// inventory.img: what the whole image directory is (format, architecture, CPU state layout,
// root, options) and the check that this machine can restore it.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>

#include "checkpoint/checkpoint.h"
#include "checkpoint/image/image_sink.h"

namespace cryo::ckpt {

using json = nlohmann::json;

void write_inventory(ImageSink& sink, pid_t root, const DumpOptions& options);
// Reads inventory.img and throws a clear error when this machine cannot honour it (another
// architecture, xsave features that this CPU/kernel does not enable).
json read_and_check_inventory(const std::string& image_dir);

}  // namespace cryo::ckpt
