"""The batched constant-velocity Kalman filter of ByteTrack."""

from __future__ import annotations

import numpy as np

from retina_cli.tracking import kalman


def test_box_conversions_round_trip():
    xyah = kalman.xyxy_to_xyah(np.array([[0.0, 0.0, 20.0, 40.0], [10.0, 5.0, 40.0, 15.0]]))
    np.testing.assert_allclose(xyah, [[10, 20, 0.5, 40], [25, 10, 3.0, 10]])
    np.testing.assert_allclose(kalman.xyah_to_xyxy(xyah), [[0, 0, 20, 40], [10, 5, 40, 15]])


def test_initiate_and_predict_use_bytetracks_noise_weights():
    mean, cov = kalman.initiate(np.array([[10.0, 20.0, 0.5, 40.0]]))
    np.testing.assert_allclose(mean, [[10, 20, 0.5, 40, 0, 0, 0, 0]])
    # std: 2 * h / 20 = 4 for positions, 10 * h / 160 = 2.5 for velocities; 1e-2 / 1e-5 for the aspect ratio
    np.testing.assert_allclose(np.diag(cov[0]), [16, 16, 1e-4, 16, 6.25, 6.25, 1e-10, 6.25])
    mean, cov = kalman.predict(mean, cov)
    np.testing.assert_allclose(mean, [[10, 20, 0.5, 40, 0, 0, 0, 0]])
    # F P F^T + Q: position 16 + 6.25 + (40 / 20)^2, velocity 6.25 + (40 / 160)^2, cross term 6.25
    assert np.isclose(cov[0, 0, 0], 26.25) and np.isclose(cov[0, 4, 4], 6.3125) and np.isclose(cov[0, 0, 4], 6.25)
    assert np.isclose(cov[0, 3, 3], 26.25) and np.isclose(cov[0, 2, 2], 1e-4 + 1e-10 + 1e-4)


def test_constant_velocity_is_learned_and_predicted():
    def truth(t):  # moves (+3, +1) px per frame, grows 0.5 px in height per frame
        return np.array([[50.0 + 3 * t, 80.0 + t, 0.5, 40.0 + 0.5 * t]])

    mean, cov = kalman.initiate(truth(0))
    for t in range(1, 61):
        mean, cov = kalman.predict(mean, cov)
        mean, cov = kalman.update(mean, cov, truth(t))
    # the error shrinks about 3x every 10 frames: 0.19 px/frame after 10 updates, 5e-4 after 60
    np.testing.assert_allclose(mean[0, 4:], [3, 1, 0, 0.5], atol=1e-3)
    for t in range(61, 66):  # no more measurements: the prediction follows the motion
        mean, cov = kalman.predict(mean, cov)
    np.testing.assert_allclose(mean[0, :4], truth(65)[0], atol=5e-3)


def test_batched_equals_one_by_one():
    rng = np.random.default_rng(0)
    meas = np.column_stack((rng.uniform(0, 300, (5, 2)), rng.uniform(0.3, 2, 5), rng.uniform(10, 80, 5)))
    mean, cov = kalman.initiate(meas)
    mean, cov = kalman.predict(mean, cov)
    new = meas + rng.normal(0, 2, size=meas.shape)
    mean_b, cov_b = kalman.update(mean, cov, new)
    for i in range(5):
        m, c = kalman.initiate(meas[i:i + 1])
        m, c = kalman.predict(m, c)
        m, c = kalman.update(m, c, new[i:i + 1])
        np.testing.assert_allclose(m[0], mean_b[i], rtol=1e-12)
        np.testing.assert_allclose(c[0], cov_b[i], rtol=1e-12, atol=1e-15)
    # the update pulls the state towards the measurement and shrinks the position uncertainty
    assert (np.abs(mean_b[:, :4] - new) < np.abs(mean[:, :4] - new)).all()
    assert (cov_b[:, 0, 0] < cov[:, 0, 0]).all()


def test_empty_batches():
    mean, cov = kalman.initiate(np.zeros((0, 4)))
    assert mean.shape == (0, 8) and cov.shape == (0, 8, 8)
    mean, cov = kalman.update(*kalman.predict(mean, cov), np.zeros((0, 4)))
    assert mean.shape == (0, 8) and cov.shape == (0, 8, 8)
