import quantlab as ql
from quantlab import backend


def test_show_config_reports_paths(capsys, monkeypatch):
    ql.show_config()
    out = capsys.readouterr().out
    for key in ("active path", "compiled kernels", "openmp", "threads", "cupy"):
        assert key in out
    monkeypatch.setenv("QUANTLAB_PURE_NUMPY", "1")
    assert ql.config()["active path"].startswith("numpy (forced")
    assert backend.kernel("_floatcast") is None


def test_n_threads_honours_env_and_small_work(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert backend.n_threads() == 3
    assert backend.n_threads(work=10) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert backend.n_threads() >= 1


def test_xp_is_numpy_for_numpy_arrays():
    import numpy as np
    assert backend.xp(np.zeros(2)) is np


def test_blas_on_one_thread_limits_and_restores():
    from threadpoolctl import threadpool_info
    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    with backend.blas_on_one_thread():
        assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before
