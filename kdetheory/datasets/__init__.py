from .synthetic import *
