"""lcz_model.classes is the single source of the 17 classes."""
import numpy as np
import pytest

from lcz_model import classes


def test_seventeen_classes_in_order():
    assert classes.N_CLASSES == 17
    assert classes.CODES == tuple([str(i) for i in range(1, 11)] + list("ABCDEFG"))
    assert classes.KEYS[0] == "lcz_1" and classes.KEYS[9] == "lcz_10" and classes.KEYS[16] == "lcz_g"
    assert classes.BUILT_INDICES == tuple(range(10))
    assert classes.NATURAL_INDICES == tuple(range(10, 17))


def test_wudapt_colours():
    assert classes.BY_CODE["1"].colour == "#8C0000"
    assert classes.BY_CODE["G"].rgb == (0x6A, 0x6A, 0xFF)
    assert len({c.colour for c in classes.CLASSES}) == 17


def test_similarity_matrix_is_symmetric_with_unit_diagonal():
    w = classes.similarity_matrix()
    assert w.shape == (17, 17)
    assert np.array_equal(w, w.T)
    assert np.all(np.diag(w) == 1.0)
    assert w[0, 1] == 0.92 and w[13, 0] == 0.0 and w[14, 15] == 0.75


def test_index_of_accepts_codes_and_keys():
    assert classes.index_of("5") == 4
    assert classes.index_of("lcz_b") == 11
    assert classes.index_of("LCZ G") == 16
    with pytest.raises(KeyError, match="unknown LCZ class"):
        classes.index_of("H")
