#include "engine/state/paths.h"
