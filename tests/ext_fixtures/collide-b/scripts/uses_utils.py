import utils

LOADED_FROM = utils.WHO
